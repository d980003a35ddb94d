"""The admin API under wrk: requests/s, p50 and p99 per read, against baselines in one run.

Used by ``python -m tests.perf.bench_api --load`` (see there). Each server is a real
process on a free loopback port; wrk (Debian's ``wrk``) drives it with a generated Lua
script that spreads requests over every organization's key and prints its own figures
as one JSON line. Servers are measured in turn, run after run, so a burst of load from
something else on the machine hits every server about equally.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from io import BytesIO
from pathlib import Path

import psutil

from tests.perf.common import ROOT, perf_env

LUA = """
local reqs = {%(reqs)s}
local i = 0
init = function(args)
  math.randomseed(os.time() + tonumber(string.match(tostring({}), "0x(%%x+)"), 16))
  i = math.random(#reqs)
end
request = function()
  i = i %% #reqs + 1
  local r = reqs[i]
  return wrk.format("GET", r[1], {["Authorization"] = "Bearer " .. r[2], ["X-Org"] = r[3]})
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p99_us": %%d, '
    .. '"max_us": %%d, "status_errors": %%d, "socket_errors": %%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, e.status, e.connect + e.read + e.write + e.timeout))
end
"""


def lua_script(requests: Sequence[tuple[str, str, str]]) -> str:
    """``requests``: (path, token, organization) triples, sent round-robin from a random start."""
    rows = ",\n".join(f'{{"{p}", "{t}", "{o}"}}' for p, t, o in requests)
    return LUA % {"reqs": rows}


@dataclass(frozen=True)
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    socket_errors: int
    cpu_ms: float = 0.0
    """The server's own CPU time (all its processes) per request: less noisy than req/s
    on a shared machine, where other work takes cores away from the server."""


def run_wrk(url: str, script: Path, *, connections: int, threads: int, seconds: float) -> WrkResult:
    done = subprocess.run(
        [
            "wrk",
            f"-c{connections}",
            f"-t{threads}",
            f"-d{round(seconds)}s",
            "--timeout",
            "5s",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    r = json.loads(line.removeprefix("RESULT "))
    return WrkResult(
        rps=r["requests"] / (r["duration_us"] / 1e6),
        p50_ms=r["p50_us"] / 1000,
        p99_ms=r["p99_us"] / 1000,
        max_ms=r["max_us"] / 1000,
        errors=r["status_errors"] + r["socket_errors"],
        socket_errors=r["socket_errors"],
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def export_ref(ref: str, into: Path) -> Path:
    """The ``worker`` package as it was at ``ref``, unpacked into ``into`` (for PYTHONPATH)."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", ref, "worker"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


@dataclass
class Server:
    name: str
    command: list[str]
    env: dict[str, str]
    cwd: Path
    log: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    results: dict[str, list[WrkResult]] = field(default_factory=dict)

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        try:
            root = psutil.Process(self.proc.pid)
            procs = [root, *root.children(recursive=True)]
            return sum(t.user + t.system for t in (p.cpu_times() for p in procs))
        except psutil.Error:
            return 0.0

    def measure(self, script: Path, *, connections: int, threads: int, seconds: float) -> WrkResult:
        cpu = self.cpu_seconds()
        r = run_wrk(
            self.base + "/", script, connections=connections, threads=threads, seconds=seconds
        )
        used = self.cpu_seconds() - cpu
        requests = r.rps * round(seconds)
        return replace(r, cpu_ms=1000 * used / requests if requests else 0.0)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                self.command,
                env=self.env,
                cwd=self.cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, probe: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.base + probe, timeout=2):  # noqa: S310
                    return
            except urllib.error.HTTPError:
                return  # it answered
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after {timeout}s")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        # Its own session: SIGTERM reaches uvicorn's supervisor and its workers alike.
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def servers_for(
    libpq_url: str,
    broker_url: str,
    workdir: Path,
    *,
    ref: str | None,
    bare_workers: int,
    server_env: dict[str, str],
    variants: dict[str, dict[str, str]],
) -> list[Server]:
    """The baseline first, this tree's default last; ``variants``: label -> extra env."""
    db_url = libpq_url.replace("postgresql://", "postgresql+psycopg://", 1)
    api_env = perf_env(DATABASE_URL=db_url, BROKER_URL=broker_url, **server_env)
    servers = [
        Server(
            name=f"bare Starlette, 1 query, {bare_workers} proc",
            command=[
                sys.executable,
                "-m",
                "uvicorn",
                "tests.perf.bare_api:app",
                "--workers",
                str(bare_workers),
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            env=perf_env(BARE_DATABASE_URL=libpq_url),
            cwd=ROOT,
            log=workdir / "bare.log",
        )
    ]
    if ref:
        tree = export_ref(ref, workdir / "ref")
        env = {**api_env, "PYTHONPATH": str(tree) + os.pathsep + api_env["PYTHONPATH"]}
        servers.append(
            Server(
                name=f"callbacks api @ {ref}",
                command=[sys.executable, "-m", "worker.cli.main", "api"],
                env=env,
                cwd=tree,
                log=workdir / "ref.log",
            )
        )
    for n, (label, extra) in enumerate(variants.items()):
        servers.append(
            Server(
                name=f"callbacks api, {label}",
                command=[sys.executable, "-m", "worker.cli.main", "api"],
                env={**api_env, **extra},
                cwd=ROOT,
                log=workdir / f"variant{n}.log",
            )
        )
    servers.append(
        Server(
            name="callbacks api (this tree)",
            command=[sys.executable, "-m", "worker.cli.main", "api"],
            env=api_env,
            cwd=ROOT,
            log=workdir / "ours.log",
        )
    )
    for s in servers:
        s.port = free_port()
        s.command += ["--port", str(s.port)]
        s.command += ["--host", "127.0.0.1"] if "worker.cli.main" in s.command else []
    return servers


def profile(server: Server, script: Path, out: Path, *, connections: int, seconds: float) -> Path:
    """py-spy over the server's process tree while wrk drives it (collapsed stacks)."""
    assert server.proc is not None
    spy = subprocess.Popen(
        [
            shutil.which("py-spy") or "py-spy",
            "record",
            "--pid",
            str(server.proc.pid),
            "--subprocesses",
            "--format",
            "raw",
            "--rate",
            "200",
            "--duration",
            str(int(seconds)),
            "--output",
            str(out),
            "--nonblocking",
            # What the GIL holder does: the CPU a process spends, not its threads' waits.
            "--gil",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)
    run_wrk(server.base + "/", script, connections=connections, threads=1, seconds=seconds - 1)
    spy.wait(timeout=60)
    return out


def show(values: Sequence[float], digits: int) -> str:
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:,.{digits}f}"
    return f"{med:,.{digits}f} ({min(values):,.{digits}f}-{max(values):,.{digits}f})"


def table(servers: Sequence[Server], endpoints: Sequence[str], connections: int) -> str:
    lines = [
        f"{'endpoint':<26} {'server':<36} {'req/s':>22} {'p50 ms':>20} {'p99 ms':>22} "
        f"{'cpu ms/req':>20} errors",
    ]
    baseline = servers[0]
    for ep in endpoints:
        for s in servers:
            rs = s.results.get(ep, [])
            if not rs:
                continue
            lines.append(
                f"{ep:<26} {s.name:<36} {show([r.rps for r in rs], 0):>22} "
                f"{show([r.p50_ms for r in rs], 1):>20} {show([r.p99_ms for r in rs], 1):>22} "
                f"{show([r.cpu_ms for r in rs], 2):>20} {sum(r.errors for r in rs)}"
            )
        for s in servers[1:]:
            ratios = [
                a.rps / b.rps for a, b in zip(s.results[ep], baseline.results[ep], strict=True)
            ]
            lines.append(f"{'':<26} {s.name + ' / baseline':<36} {show(ratios, 2):>21}x")
    lines.append(f"({connections} connections; median of runs, min-max in brackets)")
    return "\n".join(lines)


def scratch() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="bench_api_load_")
