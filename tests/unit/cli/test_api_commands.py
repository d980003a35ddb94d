"""``callbacks api`` and ``callbacks api-key`` argument parsing."""

from __future__ import annotations

import pytest

from worker.cli.api_commands import default_port
from worker.cli.main import parser


@pytest.mark.parametrize(("env", "port"), [(None, 8000), ("9123", 9123), ("nope", 8000)])
def test_port_defaults_to_env_port_else_8000(
    monkeypatch: pytest.MonkeyPatch, env: str | None, port: int
) -> None:
    if env is None:
        monkeypatch.delenv("PORT", raising=False)
    else:
        monkeypatch.setenv("PORT", env)
    assert default_port() == port


def test_api_flags() -> None:
    args = parser().parse_args(["api", "--host", "0.0.0.0", "--port", "9000"])  # noqa: S104
    assert (args.command, args.host, args.port) == ("api", "0.0.0.0", 9000)  # noqa: S104
    args = parser().parse_args(["api"])
    assert (args.host, args.port) == (None, None)


def test_api_key_flags() -> None:
    args = parser().parse_args(["api-key", "create", "--org", "org_a"])
    assert (args.command, args.api_key_command, args.organization_id) == (
        "api-key",
        "create",
        "org_a",
    )
    args = parser().parse_args(["api-key", "revoke", "key_1"])
    assert (args.api_key_command, args.key_id) == ("revoke", "key_1")
    with pytest.raises(SystemExit):
        parser().parse_args(["api-key", "create"])
