"""Summarize a py-spy ``--format raw`` profile (collapsed stacks): where the worker's time goes.

    python -m tests.perf.profile_report perf-profile/drain-0ms.raw

Prints the share of active samples by package of the innermost frame (self time) and by
function anywhere on the stack (inclusive time), for ours (``worker.*``) and the rest.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>[^:()]+)(?::\d+)?\)$")


def package_of(path: str) -> str:
    """py-spy names files relative to their sys.path entry: the first part is the package."""
    if path.startswith("worker/"):
        return path.removesuffix(".py").replace("/", ".")
    return path.split("/", 1)[0].removesuffix(".py")


def summarize(path: Path, top: int = 25) -> str:
    self_pkg: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        seen: set[str] = set()
        for frame in frames:
            m = FRAME.match(frame)
            key = f"{m['func']} [{package_of(m['file'])}]" if m else frame
            if key not in seen:
                inclusive[key] += count
                seen.add(key)
        if frames:
            m = FRAME.match(frames[-1])
            self_pkg[package_of(m["file"]) if m else frames[-1]] += count
    out = [f"{total} active samples in {path.name}", "", "self time by package:"]
    out += [f"  {100 * c / total:5.1f}%  {k}" for k, c in self_pkg.most_common(top)]
    out += ["", "inclusive time by function:"]
    out += [f"  {100 * c / total:5.1f}%  {k}" for k, c in inclusive.most_common(top * 2)]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    print(summarize(args.profile, args.top))


if __name__ == "__main__":
    main()
