"""``callbacks run --demo`` many times in a row, each in a fresh directory; counts failures.

python -m tests.support.demo_soak --runs 200
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.processes import command, free_port, service_env


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--runs", type=int, default=200)
    args = p.parse_args()
    failures = 0
    durations: list[float] = []
    began = time.monotonic()
    for n in range(1, args.runs + 1):
        with tempfile.TemporaryDirectory(prefix="demo-soak-") as tmp:
            start = time.monotonic()
            result = subprocess.run(
                command("callbacks", "run", "--demo"),
                cwd=tmp,
                env=service_env(PORT=str(free_port())),
                capture_output=True,
                timeout=300,
            )
            durations.append(time.monotonic() - start)
            out = result.stdout.decode(errors="replace")
            placed = any(line.startswith('{"cb_') for line in out.splitlines())
            if result.returncode != 0 or not placed:
                failures += 1
                log = Path(tempfile.gettempdir()) / f"demo-soak-failure-{n}.log"
                log.write_bytes(result.stdout + b"\n--- stderr ---\n" + result.stderr)
                print(f"run {n}: FAILED exit {result.returncode} (output in {log})", flush=True)
        if n % 10 == 0:
            print(f"{n} runs, {failures} failed, {time.monotonic() - began:.0f} s", flush=True)
    durations.sort()
    print(
        f"demo: {args.runs} runs, {failures} failed, {time.monotonic() - began:.0f} s in all "
        f"(per run: median {durations[len(durations) // 2]:.1f} s, max {durations[-1]:.1f} s)"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
