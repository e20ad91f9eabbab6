"""What the sandbox costs per run: a sandboxed command against the same command run bare.

Baseline: ``subprocess.run`` of the same argv with captured output, no limits. Prints the
median wall time of each and the ratio, per isolation level that works on this machine,
for ``true`` (the sandbox's fixed cost) and ``python -c pass`` (the smallest test run).

    python benchmarks/sandbox.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.sandbox import available_levels, process_limit_mechanism, run_sandboxed


def median_ms(func: Callable[[], object], runs: int) -> float:
    func()  # warm caches (and the sandbox's probes)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    python_dirs = sorted({Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()})
    commands = {"true": ["true"], "python -c pass": [sys.executable, "-c", "pass"]}
    print(f"process limit via: {process_limit_mechanism()}; {args.runs} runs each, median")
    print(f"{'command':<16} {'level':<8} {'bare ms':>8} {'sandboxed ms':>13} {'ratio':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, argv in commands.items():
            bare = median_ms(
                lambda argv=argv: subprocess.run(argv, capture_output=True, check=True),
                args.runs,
            )
            for level in available_levels():
                sandboxed = median_ms(
                    lambda argv=argv, level=level: run_sandboxed(
                        argv, cwd=work, writable=[work], readonly=python_dirs, level=level
                    ),
                    args.runs,
                )
                print(f"{name:<16} {level:<8} {bare:>8.1f} {sandboxed:>13.1f} "
                      f"{sandboxed / bare:>6.2f}")


if __name__ == "__main__":
    main()
