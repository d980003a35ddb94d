"""No server-side request forgery through a webhook URL (resolution injected: these tests
send no traffic at all)."""

from __future__ import annotations

import pytest

from worker.celery.config import WEBHOOK_QUEUE, celery_config
from worker.settings import load_settings
from worker.webhooks.addresses import Allowed, RefusedURL, check_url


def _resolves_to(*addresses: str):  # type: ignore[no-untyped-def]
    return lambda host, port: list(addresses)


@pytest.mark.parametrize(
    "url",
    [
        "https://169.254.169.254/latest/meta-data",
        "https://10.0.0.1/hook",
        "http://169.254.169.254/",
        "https://[::ffff:10.0.0.1]/hook",
        "https://192.168.1.10/hook",
        "https://0.0.0.0/hook",
    ],
)
def test_private_link_local_and_metadata_addresses_are_refused(url: str) -> None:
    with pytest.raises(RefusedURL, match="url: "):
        check_url(url)


def test_a_name_resolving_to_a_private_address_is_refused() -> None:
    with pytest.raises(RefusedURL, match=r"resolves to 10\.0\.0\.1"):
        check_url("https://hooks.example.com/x", resolver=_resolves_to("93.184.216.34", "10.0.0.1"))


def test_plain_http_only_for_loopback_and_allowed_hosts() -> None:
    with pytest.raises(RefusedURL, match="plain http"):
        check_url("http://hooks.example.com/x", resolver=_resolves_to("93.184.216.34"))
    assert check_url("http://127.0.0.1:8080/x").address == "127.0.0.1"
    with pytest.raises(RefusedURL, match="private"):
        check_url(
            "http://crm.internal/x",
            allowed=Allowed(http_hosts={"crm.internal"}),
            resolver=_resolves_to("10.0.0.5"),
        )
    internal = check_url(
        "http://crm.internal/x",
        allowed=Allowed(http_hosts={"crm.internal"}, private_hosts={"crm.internal"}),
        resolver=_resolves_to("10.0.0.5"),
    )
    assert internal.address == "10.0.0.5"


def test_the_target_connects_to_the_checked_address_with_the_name_as_host() -> None:
    target = check_url(
        "https://hooks.example.com:8443/in?a=1", resolver=_resolves_to("93.184.216.34")
    )
    assert target.connect_url == "https://93.184.216.34:8443/in?a=1"
    assert target.host_header == "hooks.example.com:8443"
    assert target.host == "hooks.example.com"


def test_bad_urls_say_why() -> None:
    with pytest.raises(RefusedURL, match="not an absolute https"):
        check_url("ftp://example.com/")
    with pytest.raises(RefusedURL, match="credentials"):
        check_url("https://u:p@example.com/", resolver=_resolves_to("93.184.216.34"))


def test_the_bare_worker_consumes_the_webhook_queue() -> None:
    config = celery_config(load_settings())
    assert WEBHOOK_QUEUE in {q.name for q in config["task_queues"]}
    assert config["task_routes"]["callbacks.webhooks_deliver"] == {"queue": WEBHOOK_QUEUE}
    assert "webhooks-sweep" in config["beat_schedule"]
