"""What the sandbox costs per run: a sandboxed command against the same command run bare.

Baseline: ``subprocess.run`` of the same argv with captured output, no limits. Prints the
median wall time of each and the ratio, per isolation level that works on this machine,
for ``true`` (the sandbox's fixed cost) and ``python -c pass`` (the smallest test run).

Then the bind list's own cost (issue 9): bubblewrap alone, same flags, started by a plain
``subprocess.run``, with the whole root bound read-only (the bind cra used before; the
named baseline; the two run turn about) against cra's bind list (``bind_plan``: system folders, a stand-in /etc,
the interpreter's installation, a scratch folder), for ``true`` and ``python -c pass``.

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

from harness.sandbox import (
    Limits,
    _bwrap_flags,
    available_levels,
    bind_plan,
    command_for,
    process_limit_mechanism,
    run_sandboxed,
)


def median_ms(func: Callable[[], object], runs: int) -> float:
    func()  # warm caches (and the sandbox's probes)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def interleaved_ms(a: list[str], b: list[str], runs: int) -> tuple[float, float]:
    """Medians of ``a`` and ``b`` run turn about, so a busy machine slows both alike."""
    times: tuple[list[float], list[float]] = ([], [])
    for i in range(runs + 1):
        for argv, out in ((a, times[0]), (b, times[1])) if i % 2 else ((b, times[1]), (a, times[0])):
            start = time.perf_counter()
            subprocess.run(argv, capture_output=True, check=True)
            if i:  # the first round warms caches
                out.append(time.perf_counter() - start)
    return statistics.median(times[0]) * 1000, statistics.median(times[1]) * 1000


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
        if "bwrap" in available_levels():
            bind_list_cost(work, commands, args.runs)


def bind_list_cost(work: Path, commands: dict[str, list[str]], runs: int) -> None:
    flags = _bwrap_flags()
    assert flags is not None
    run_dir = work / "run"
    run_dir.mkdir()
    limits = Limits()
    print("\nbubblewrap alone: whole root read-only (baseline) vs cra's bind list")
    print(f"{'command':<16} {'root ms':>8} {'bind list ms':>13} {'ratio':>6} {'delta ms':>9}")
    for name, argv in commands.items():
        whole_root = [*flags, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
                      "--tmpfs", "/tmp", "--tmpfs", "/run", "--bind", str(work), str(work),
                      "--chdir", str(work), "--", *argv]
        plan = bind_plan([work], pythons=[Path(sys.executable)])
        narrow, _ = command_for("bwrap", argv, work, plan, run_dir, limits)
        root_ms, bind_ms = interleaved_ms(whole_root, narrow, runs)
        print(f"{name:<16} {root_ms:>8.1f} {bind_ms:>13.1f} {bind_ms / root_ms:>6.2f} "
              f"{bind_ms - root_ms:>9.1f}")


if __name__ == "__main__":
    main()
