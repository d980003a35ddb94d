"""Container health check for every role the image runs (Docker HEALTHCHECK, compose).

``python healthcheck.py [api|worker|beat|auto]``; ``auto`` (the default) finds which
Procfile command runs in the container by reading ``/proc/*/cmdline``:

- api: ``GET http://127.0.0.1:$PORT/healthz`` (port 8000 when PORT is unset) answers 200;
- worker: ``celery -A worker inspect ping -d celery@$HOSTNAME`` gets a reply, so the
  worker's consumer still talks to the broker even while every pool slot is dialling;
- beat: the beat process is still there (beat has no control channel to ask);
- anything else (the one-shot ``callbacks migrate``): healthy.

Exit 0 healthy, 1 unhealthy: what Docker expects. Standard library only, so it runs in
the final image with nothing added to it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

ROLES = ("api", "worker", "beat")
PING_TIMEOUT_SECONDS = 10


def role_of(argv: Sequence[str]) -> str | None:
    """The Procfile role a process's argv runs, or None."""
    names = [Path(arg).name for arg in argv]
    if "callbacks" in names:
        rest = names[names.index("callbacks") + 1 :]
        return "api" if rest[:1] == ["api"] else None
    if "celery" in names:
        positional = [a for a in names[names.index("celery") + 1 :] if not a.startswith("-")]
        # `celery -A worker worker`: the app name, then the sub-command.
        for sub in ("worker", "beat"):
            if positional[1:2] == [sub]:
                return sub
    return None


def running_roles(proc: Path = Path("/proc")) -> set[str]:
    roles: set[str] = set()
    for cmdline in proc.glob("[0-9]*/cmdline"):
        try:
            raw = cmdline.read_bytes()
        except OSError:  # the process ended while we looked
            continue
        role = role_of([part.decode(errors="replace") for part in raw.split(b"\0") if part])
        if role:
            roles.add(role)
    return roles


def check_api(port: str | None = None, timeout: float = 5.0) -> bool:
    url = f"http://127.0.0.1:{port or os.environ.get('PORT') or '8000'}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def check_worker() -> bool:
    node = f"celery@{os.environ.get('HOSTNAME') or socket.gethostname()}"
    command = ["celery", "-A", "worker", "inspect", "ping", "-d", node]
    command += ["--timeout", str(PING_TIMEOUT_SECONDS)]
    try:
        done = subprocess.run(  # noqa: S603 - fixed argv, no shell
            command, capture_output=True, timeout=PING_TIMEOUT_SECONDS + 20, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def check_beat() -> bool:
    return "beat" in running_roles()


def healthy(roles: Iterable[str]) -> bool:
    checks: dict[str, Callable[[], bool]] = {
        "api": check_api,
        "worker": check_worker,
        "beat": check_beat,
    }
    return all(checks[role]() for role in roles)


def main(argv: Sequence[str]) -> int:
    wanted = argv[0] if argv else "auto"
    if wanted not in (*ROLES, "auto"):
        print(f"usage: healthcheck.py [{'|'.join(ROLES)}|auto], not {wanted!r}", file=sys.stderr)
        return 2
    roles = running_roles() if wanted == "auto" else {wanted}
    return 0 if healthy(roles) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
