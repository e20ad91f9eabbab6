"""Chronological-holdout evaluation that decides (seed 004 §4-§6, seed 002's day-sleep-eval).

A candidate adapter version is judged on tasks from after its training data's cutoff,
against a baseline (the active version, the base model or another version), on the same
tasks with the same seeds; every difference gets a paired bootstrap interval; the gates in
``[evaluation]`` promote it or not, and a regression of the active version rolls it back.

* ``holdout``: which tasks, the leakage check, the size check, the frozen regression set;
* ``stats``: paired bootstrap intervals, pass@k, the holdout size an effect needs;
* ``metrics``: what each metric measures, per task (stage level: Gate 1; end to end: Gate 2);
* ``stages``: the stage metrics, each stage asked on its own with the gold-derived prompt;
* ``endtoend``: the pipeline's runs on the holdout turned into the Gate 2 metrics;
* ``gates``: the decision from ``[evaluation]``;
* ``plots`` and ``report``: ``var/reports/<id>/`` with report.md, report.html and PNGs;
* ``evaluate``: one evaluation, resumable; ``cycle``: day -> sleep -> eval, resumable.
"""
