"""Plan-diff alignment on hand-made plan/diff pairs with known scores, and its invariants."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.errors import ConfigError
from harness.alignment import Weights, match_symbols, score_plan
from harness.groundtruth import GroundTruth, gold_plan, order_pairs_from
from harness.plans import Plan, PlanStep

# The commit: core.py and api.py change; api imports core, so core comes first.
TRUTH = GroundTruth(
    files=["pkg/core.py", "pkg/api.py"],
    symbols={"pkg/core.py": ["Parser.parse", "helper"], "pkg/api.py": ["load"]},
    order_pairs=[("pkg/core.py", "pkg/api.py")],
)
INDEX = ["pkg/__init__.py", "pkg/core.py", "pkg/api.py", "pkg/util.py"]


def plan(*steps: tuple[str, list[str]]) -> Plan:
    return Plan(steps=[PlanStep(i, f, s) for i, (f, s) in enumerate(steps, start=1)])


def test_the_perfect_plan_scores_one() -> None:
    s = score_plan(plan(("pkg/core.py", ["Parser.parse", "helper"]), ("pkg/api.py", ["load"])), TRUTH)
    assert (s.files.f1, s.symbols.f1, s.order, s.order_checked, s.score) == (1.0, 1.0, 1.0, 1, 1.0)
    assert s.to_dict()["score"] == 1.0


def test_a_wrong_file_costs_precision_and_recall() -> None:
    # util.py instead of api.py: files P = R = 1/2; symbols: 2 of 3 found, 1 wrong -> P 2/3, R 2/3.
    s = score_plan(plan(("pkg/core.py", ["Parser.parse", "helper"]), ("pkg/util.py", ["load"])), TRUTH)
    assert (s.files.precision, s.files.recall, s.files.f1) == (0.5, 0.5, 0.5)
    assert s.symbols.f1 == pytest.approx(2 / 3)
    assert s.order_checked == 0 and s.order == 1.0  # api.py not planned: no pair applies
    assert s.score == pytest.approx(0.5 * 0.5 + 0.35 * (2 / 3) + 0.15 * 1.0)
    assert s.files.extra == ["pkg/util.py"] and s.files.missed == ["pkg/api.py"]


def test_a_missing_symbol_costs_symbol_recall_only() -> None:
    s = score_plan(plan(("pkg/core.py", ["Parser.parse"]), ("pkg/api.py", ["load"])), TRUTH)
    assert s.files.f1 == 1.0
    assert (s.symbols.precision, s.symbols.recall) == (1.0, pytest.approx(2 / 3))
    assert s.symbols.f1 == pytest.approx(0.8)
    assert s.score == pytest.approx(0.5 + 0.35 * 0.8 + 0.15)
    assert s.symbols.missed == ["pkg/core.py::helper"]


def test_reversed_dependency_order_costs_the_order_part() -> None:
    s = score_plan(plan(("pkg/api.py", ["load"]), ("pkg/core.py", ["Parser.parse", "helper"])), TRUTH)
    assert (s.files.f1, s.symbols.f1) == (1.0, 1.0)
    assert (s.order, s.order_checked, s.order_violated) == (0.0, 1, [("pkg/core.py", "pkg/api.py")])
    assert s.score == pytest.approx(0.85)


def test_depends_on_decides_the_order_not_the_list_position() -> None:
    p = Plan(steps=[PlanStep(1, "pkg/api.py", ["load"], depends_on=[2]),
                    PlanStep(2, "pkg/core.py", ["Parser.parse", "helper"])])
    assert score_plan(p, TRUTH).score == 1.0


def test_a_hallucinated_file_costs_precision_and_is_reported() -> None:
    p = plan(("pkg/core.py", ["Parser.parse", "helper"]), ("pkg/api.py", ["load"]), ("pkg/magic.py", ["spell"]))
    s = score_plan(p, TRUTH, known_files=INDEX)
    assert (s.files.precision, s.files.recall) == (pytest.approx(2 / 3), 1.0)
    assert s.files.f1 == pytest.approx(0.8)
    assert (s.symbols.precision, s.symbols.recall) == (0.75, 1.0)
    assert s.unknown_files == ["pkg/magic.py"]
    assert s.score == pytest.approx(0.5 * 0.8 + 0.35 * (2 * 0.75 / 1.75) + 0.15)


def test_empty_and_all_wrong_plans_score_zero_and_empty_truth_is_handled() -> None:
    assert score_plan(Plan(steps=[]), TRUTH).score == 0.0
    assert score_plan(plan(("pkg/util.py", [])), TRUTH).score == 0.0  # no order credit either
    empty = GroundTruth(files=[], symbols={}, order_pairs=[])
    assert score_plan(Plan(steps=[]), empty).score == 1.0
    assert score_plan(plan(("pkg/util.py", ["f"])), empty).score == 0.0


def test_test_steps_are_not_scored() -> None:
    p = Plan(steps=[PlanStep(1, "pkg/core.py", ["Parser.parse", "helper"]), PlanStep(2, "pkg/api.py", ["load"]),
                    PlanStep(3, "tests/test_core.py", ["test_parse"], "test")])
    assert score_plan(p, TRUTH).score == 1.0


def test_symbol_names_match_by_dotted_tail_and_ignore_signatures() -> None:
    assert match_symbols(["parse"], ["Parser.parse"]) == [("parse", "Parser.parse")]
    assert match_symbols(["pkg.core.helper"], ["helper"]) == [("pkg.core.helper", "helper")]
    assert match_symbols(["def helper(x)", "helper()"], ["helper"]) == [("helper", "helper")]
    # Exact names win before tails, and each side matches once.
    assert match_symbols(["parse", "Parser.parse"], ["Parser.parse", "Lexer.parse"]) == [
        ("Parser.parse", "Parser.parse"), ("parse", "Lexer.parse")]
    assert match_symbols(["arse"], ["Parser.parse"]) == []


def test_odd_plans_never_crash_the_scorer() -> None:
    weird = Plan(steps=[PlanStep(1, "./pkg/core.py", ["", "  ", "()"]), PlanStep(1, "pkg/core.py", ["helper"], depends_on=[9]),
                        PlanStep(3, "", []), PlanStep(4, "/etc/passwd", ["root"], depends_on=[4])])
    s = score_plan(weird, TRUTH, known_files=INDEX)
    assert 0.0 <= s.score <= 1.0
    assert "/etc/passwd" in s.unknown_files


def test_weights_must_sum_to_one() -> None:
    with pytest.raises(ConfigError, match="sum to 1"):
        Weights(0.5, 0.5, 0.5)
    s = score_plan(plan(("pkg/core.py", []), ("pkg/api.py", [])), TRUTH, weights=Weights(1.0, 0.0, 0.0))
    assert s.score == 1.0


# ----------------------------------------------------------------------------- properties

UNIVERSE = ["pkg/a.py", "pkg/b.py", "pkg/c.py", "pkg/d.py", "ghost.py"]
SYMS = ["f", "g", "C", "C.m"]

truths = st.builds(
    lambda files, syms, pairs: GroundTruth(
        files=files, symbols={f: syms for f in files},
        # Like ground_truth: the closure of import edges, cycles dropped.
        order_pairs=order_pairs_from({(a, b) for a, b in pairs if a in files and b in files and a != b}),
    ),
    st.lists(st.sampled_from(UNIVERSE[:4]), unique=True, max_size=4),
    st.lists(st.sampled_from(SYMS), unique=True, max_size=3),
    st.lists(st.tuples(st.sampled_from(UNIVERSE[:4]), st.sampled_from(UNIVERSE[:4])), max_size=4),
)
steps = st.lists(st.tuples(st.sampled_from(UNIVERSE), st.lists(st.sampled_from(SYMS + ["zz"]), max_size=3)),
                 max_size=6)


def as_plan(items: list[tuple[str, list[str]]]) -> Plan:
    return Plan(steps=[PlanStep(i, f, s) for i, (f, s) in enumerate(items, start=1)])


@settings(max_examples=300, deadline=None)
@given(truths, steps)
def test_every_part_stays_in_zero_one(truth: GroundTruth, items: list[tuple[str, list[str]]]) -> None:
    s = score_plan(as_plan(items), truth)
    for value in (s.score, s.order, s.files.precision, s.files.recall, s.files.f1,
                  s.symbols.precision, s.symbols.recall, s.symbols.f1):
        assert 0.0 <= value <= 1.0


@settings(max_examples=300, deadline=None)
@given(truths, steps, st.data())
def test_adding_a_correct_file_never_lowers_recall(truth: GroundTruth, items: list[tuple[str, list[str]]],
                                                   data: st.DataObject) -> None:
    if not truth.files:
        return
    before = score_plan(as_plan(items), truth)
    extra = data.draw(st.sampled_from(truth.files))
    after = score_plan(as_plan([*items, (extra, truth.symbols[extra])]), truth)
    assert after.files.recall >= before.files.recall
    assert after.symbols.recall >= before.symbols.recall


@settings(max_examples=200, deadline=None)
@given(truths)
def test_the_gold_plan_of_any_truth_scores_one(truth: GroundTruth) -> None:
    assert score_plan(gold_plan(truth), truth).score == pytest.approx(1.0)
