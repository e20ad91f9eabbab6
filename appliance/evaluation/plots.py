"""The report's figures, drawn with matplotlib on the air-gapped box (no display needed).

Each function writes one PNG of a fixed size (``SIZE`` pixels) and returns its path; every
figure says under its plot which evaluations, runs and LLM calls it was drawn from, so a
number on a chart can be traced to the rows behind it. Figures are made with
``matplotlib.figure.Figure`` directly (no pyplot, no backend state): what matplotlib
recommends for programs that only write files.

* ``metrics``: per metric (a panel each, on its own scale), each side's mean with its
  interval, and the paired difference with its interval (the gate reads the primary one);
* ``groups``: the primary metric's difference per repo and per domain;
* ``curves``: over the slot's evaluations (one per cycle), seed 002's learning curves (pass
  rate, steps-to-green, repeat-error rate) or the stage metrics, both sides.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from appliance.evaluation.metrics import METRICS

DPI = 100
SIZE = (1000, 600)  # pixels of every figure
CANDIDATE_COLOR, BASELINE_COLOR, DIFF_COLOR = "#1f77b4", "#7f7f7f", "#d62728"


def id_ranges(ids: Iterable[int]) -> str:
    """``[1, 2, 3, 7, 9, 10]`` -> ``"1-3, 7, 9-10"``; "none" when empty."""
    nums = sorted({int(i) for i in ids})
    if not nums:
        return "none"
    parts, start, prev = [], nums[0], nums[0]
    for n in [*nums[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        parts.append(f"{start}-{prev}" if prev != start else f"{start}")
        if n is not None:
            start = prev = n
    return ", ".join(parts)


def _figure(rows: int = 1, cols: int = 1) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(SIZE[0] / DPI, SIZE[1] / DPI), dpi=DPI)
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, axes


def _save(fig: Any, path: Path, source: str) -> Path:
    fig.text(0.01, 0.01, source, fontsize=7, color="#444444", ha="left", va="bottom", wrap=True)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png", dpi=DPI)  # fixed size: no bbox_inches="tight"
    tmp.replace(path)
    return path


def _interval_bar(ax: Any, y: float, mean: float, low: float, high: float, color: str, label: str | None) -> None:
    ax.errorbar([mean], [y], xerr=[[mean - low], [high - mean]], fmt="o", color=color, capsize=4, label=label)


def metrics(path: Path, rows: Sequence[dict[str, Any]], *, title: str, source: str) -> Path:
    """One small panel per metric, each on its own scale: both sides' means with their
    intervals, the paired difference and its interval in the panel's title (red when the
    candidate is surely worse, green when surely better). ``rows``: {label, primary,
    higher_is_better, bounded (a [0, 1] metric), candidate: (mean, lo, hi), baseline: (mean, lo, hi),
    diff: (mean, lo, hi)}."""
    cols = min(5, max(1, len(rows)))
    n_rows = max(1, (len(rows) + cols - 1) // cols)
    fig, axes = _figure(n_rows, cols)
    for i, r in enumerate(rows):
        ax = axes[i // cols][i % cols]
        _interval_bar(ax, 1, *r["candidate"], CANDIDATE_COLOR, "candidate")
        _interval_bar(ax, 0, *r["baseline"], BASELINE_COLOR, "baseline")
        d, lo, hi = r["diff"]
        good = (lo > 0 or hi < 0) and ((lo > 0) == r.get("higher_is_better", True))
        bad = (lo > 0 or hi < 0) and not good
        color = "#2ca02c" if good else DIFF_COLOR if bad else "black"
        ax.set_title(("* " if r.get("primary") else "") + f"{r['label']}\n{d:+.3f} [{lo:+.3f}, {hi:+.3f}]",
                     fontsize=8, color=color)
        ax.set_yticks([0, 1])
        ax.set_yticklabels(["baseline", "candidate"], fontsize=7)
        ax.set_ylim(-0.6, 1.6)
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(axis="x", alpha=0.3)
        if r.get("bounded"):  # a rate or a score: the whole [0, 1], so panels compare at a glance
            ax.set_xlim(-0.05, 1.05)
    for j in range(len(rows), n_rows * cols):
        axes[j // cols][j % cols].set_visible(False)
    if not rows:
        axes[0][0].text(0.5, 0.5, "no metric was measured on both sides", ha="center", va="center",
                        transform=axes[0][0].transAxes)
    fig.suptitle(title)
    return _save(fig, path, source)


def groups(path: Path, panels: Sequence[tuple[str, dict[str, dict[str, Any] | None]]], *, title: str,
           source: str) -> Path:
    """``panels``: (heading, {group: difference dict or None}) each, e.g. per repo, per domain."""
    fig, axes = _figure(1, max(1, len(panels)))
    for ax, (heading, diffs) in zip(axes[0], panels, strict=False):
        names = [g for g, d in diffs.items() if d is not None]
        ys = list(range(len(names)))[::-1]
        for y, g in zip(ys, names, strict=True):
            d = diffs[g]
            assert d is not None
            _interval_bar(ax, y, d["diff"], d["low"], d["high"], DIFF_COLOR, None)
            ax.annotate(f"n={d['n']}", (d["high"], y), xytext=(4, 0), textcoords="offset points", fontsize=7,
                        va="center")
        ax.set_yticks(ys)
        ax.set_yticklabels(names)
        ax.axvline(0, color="black", lw=0.8)
        ax.grid(axis="x", alpha=0.3)
        ax.set_title(heading)
        if not names:
            ax.text(0.5, 0.5, "no paired task", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle(title)
    return _save(fig, path, source)


def curves(path: Path, points: Sequence[dict[str, Any]], names: Sequence[str], *, title: str, source: str) -> Path:
    """Learning curves: ``points`` are the slot's evaluations in order, each {label,
    metrics: {name: {"candidate": mean, "baseline": mean, "low": .., "high": ..}}};
    one panel per metric of ``names``."""
    cols = min(3, max(1, len(names)))
    rows = (len(names) + cols - 1) // cols
    fig, axes = _figure(rows, cols)
    xs = list(range(1, len(points) + 1))
    for i, name in enumerate(names):
        ax = axes[i // cols][i % cols]
        m = METRICS[name]
        for side, color in (("candidate", CANDIDATE_COLOR), ("baseline", BASELINE_COLOR)):
            ys = [p["metrics"].get(name, {}).get(side) for p in points]
            shown = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None]
            if shown:
                ax.plot([x for x, _ in shown], [y for _, y in shown], "o-", color=color, label=side)
        ax.set_title(m.label + (" (lower is better)" if not m.higher_is_better else ""), fontsize=10)
        ax.set_xticks(xs)
        ax.set_xticklabels([p["label"] for p in points], fontsize=7, rotation=30)
        ax.grid(alpha=0.3)
        if m.unit:
            ax.set_ylabel(m.unit)
        else:  # a rate or a score: the whole [0, 1] range, so a flat line reads as flat
            ax.set_ylim(-0.05, 1.05)
        if i == 0 and ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    for j in range(len(names), rows * cols):
        axes[j // cols][j % cols].set_visible(False)
    fig.suptitle(title)
    return _save(fig, path, source)
