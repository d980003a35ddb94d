import pytest

from worker.settings import ConfigurationError, load_settings


def test_defaults_select_the_embedded_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "BROKER_URL", "SPEKO_API_URL", "SPEKO_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    s = load_settings()
    assert s.embedded
    assert s.effective_database_url.startswith("sqlite:///")
    assert s.effective_broker_url == "filesystem://"
    assert s.effective_log_format == "console"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
        ({"POLL_INTERVAL": "0"}, "POLL_INTERVAL"),
        ({"SPEKO_API_URL": "http://127.0.0.1:9"}, "SPEKO_API_KEY must be set"),
        ({"SPEKO_API_URL": "not a url", "SPEKO_API_KEY": "k"}, "SPEKO_API_URL"),
        ({"ATTEMPT_LEASE": "10"}, "ATTEMPT_LEASE must be above the longest dial"),
        ({"WORKER_POOL": "fibers"}, "WORKER_POOL"),
        # The dialer's event loop thread cannot live in a monkey-patched process.
        ({"WORKER_POOL": "gevent"}, "gevent is not supported"),
        ({"UNKNOWN_OUTCOME_POLICY": "guess"}, "UNKNOWN_OUTCOME_POLICY"),
        ({"DIALER": "speko"}, "DIALER=speko needs SPEKO_API_URL"),
        ({"DIALER": "phone"}, "DIALER"),
    ],
)
def test_invalid_configuration_stops_start_up_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as err:
        load_settings()
    assert message in str(err.value)
    assert "sk_" not in str(err.value)


PG = "postgresql+psycopg://u@db/x"
URL = "https://speko.example.invalid"


@pytest.mark.parametrize(
    ("values", "dialer"),
    [
        ({}, "log"),  # embedded: the log dialer is the default
        ({"database_url": PG}, None),  # production without a provider: none (refuse)
        ({"database_url": PG, "dialer": "log"}, "log"),  # asked for explicitly
        ({"database_url": PG, "speko_api_url": URL, "speko_api_key": "k"}, "speko"),
        ({"speko_api_url": URL, "speko_api_key": "k"}, "speko"),
        ({"speko_api_url": URL, "speko_api_key": "k", "dialer": "log"}, "log"),
    ],
)
def test_which_dialer_a_worker_uses(
    monkeypatch: pytest.MonkeyPatch, values: dict[str, str], dialer: str | None
) -> None:
    for name in ("DATABASE_URL", "SPEKO_API_URL", "SPEKO_API_KEY", "DIALER"):
        monkeypatch.delenv(name, raising=False)
    assert load_settings(**values).effective_dialer == dialer


def test_a_production_worker_without_a_provider_refuses_naming_speko_api_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from worker.runtime import build_dialer, require_dialer

    for name in ("SPEKO_API_URL", "SPEKO_API_KEY", "DIALER"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings(database_url=PG)
    for check in (require_dialer, build_dialer):
        with pytest.raises(ConfigurationError) as err:
            check(settings)
        assert "SPEKO_API_URL" in str(err.value)
        assert "DIALER=log" in str(err.value)
    require_dialer(load_settings(database_url=PG, dialer="log"))
