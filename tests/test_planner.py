"""The Plan stage on a real indexed repo: the retrieval planner and the model planner.

The model planner runs through the real client with a scripted provider (the schema
check and the call log are real); the tiny-model run is in test_pipeline.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from repo_builder import RepoBuilder

from appliance.db.core import Database
from appliance.db.runs import list_calls
from appliance.llm import LLMClient, LLMConfig
from appliance.llm.providers.scripted import ScriptedProvider
from harness.index import SymbolIndex
from harness.planner import (
    model_plan,
    outlines_for,
    plan_messages,
    repair_messages,
    retrieval_plan,
    schema_files,
    source_files,
    symbol_spans,
)
from harness.plans import Plan
from harness.retrieve import retrieve

FILES = {
    "shop/__init__.py": '"""A small shop."""\n',
    "shop/money.py": (
        '"""Money helpers."""\n\n\ndef round_cents(amount: float) -> float:\n'
        '    """Round an amount of money to whole cents."""\n    return round(amount, 2)\n'
    ),
    "shop/cart.py": (
        '"""Shopping carts."""\nfrom .money import round_cents\n\n\nclass Cart:\n'
        '    """Items to buy."""\n\n    def total(self) -> float:\n'
        '        """Total money of the cart, rounded to cents."""\n        return round_cents(0.0)\n'
    ),
    "shop/stock.py": '"""Stock levels."""\n\n\ndef reserve(sku: str) -> bool:\n    return True\n',
    "tests/test_cart.py": "from shop.cart import Cart\n\n\ndef test_total():\n    assert Cart().total() == 0\n",
}
TASK = "Cart total rounds money to cents wrongly\n\nround_cents in the cart total loses a cent."


@pytest.fixture
def indexed(tmp_path: Path):
    repo = RepoBuilder(tmp_path / "shop")
    sha = repo.commit("Start the shop", FILES)
    with SymbolIndex(tmp_path / "ix.db") as ix:
        ix.index_commit(repo.path, sha)
        yield ix, sha


def _client(db: Database, answers: list) -> tuple[LLMClient, ScriptedProvider]:
    provider = ScriptedProvider(answers)
    return LLMClient(provider, config=LLMConfig(retry_backoff_s=0, max_retries=0), log=db), provider


def test_the_retrieval_planner_orders_retrieved_files_by_the_import_graph(indexed) -> None:
    ix, sha = indexed
    r = retrieve(ix, sha, TASK)
    top = [f.path for f in r.files[:2]]
    assert set(top) == {"shop/cart.py", "shop/money.py"}
    plan = retrieval_plan(ix, sha, r, k_files=2)
    assert plan is not None and plan.source == "retrieval" and plan.kind == "step"
    assert plan.files() == ["shop/money.py", "shop/cart.py"]  # money is imported by cart: first
    money, cart = plan.ordered_steps()
    assert "round_cents" in money.symbols and "Cart.total" in cart.symbols
    assert cart.depends_on == [money.id] and money.depends_on == []
    Plan.from_dict(plan.to_dict())  # a valid stored plan
    assert retrieval_plan(ix, sha, retrieve(ix, sha, "zzz qqq")) is None


def test_the_plan_prompt_lists_retrieved_files_with_their_symbols(indexed) -> None:
    ix, sha = indexed
    r = retrieve(ix, sha, TASK, exclude=lambda p: p.startswith("tests/"))
    outlines = outlines_for(ix, sha, r)
    assert "tests/test_cart.py" not in outlines
    assert "Cart.total: def total(self) -> float" in outlines["shop/cart.py"]
    msgs = plan_messages(TASK, outlines, kind="test")
    assert msgs[0]["role"] == "system" and '"kind": "test"' in msgs[0]["content"]
    assert msgs[1]["content"].startswith("Task:\nCart total") and "shop/money.py\n  round_cents" in msgs[1]["content"]
    assert source_files(ix, sha) == ["shop/__init__.py", "shop/cart.py", "shop/money.py", "shop/stock.py"]


def test_a_model_plan_comes_back_under_a_schema_naming_the_index_files(indexed, db: Database) -> None:
    ix, sha = indexed
    answer = json.dumps({"kind": "step", "steps": [
        {"id": 1, "file": "shop/money.py", "symbols": ["round_cents"], "action": "modify",
         "description": "round half up", "depends_on": []},
        {"id": 2, "file": "shop/cart.py", "symbols": ["Cart.total"], "action": "modify",
         "description": "use it", "depends_on": [1]},
    ]})
    client, provider = _client(db, [answer])
    files = source_files(ix, sha)
    msgs = plan_messages(TASK, outlines_for(ix, sha, retrieve(ix, sha, TASK)))
    out = model_plan(client, msgs, files, temperature=0.5, seed=7)
    assert out.ok and out.plan is not None and out.plan.source == "model"
    assert out.plan.files() == ["shop/money.py", "shop/cart.py"]
    schema = provider.requests[0].json_schema
    existing, created = schema["properties"]["steps"]["items"]["anyOf"]
    assert existing["properties"]["file"]["enum"] == files
    assert created["properties"]["action"]["enum"] == ["add", "test"] and "pattern" in created["properties"]["file"]
    [call] = list_calls(db)
    assert call.stage == "plan" and call.status == "ok" and call.temperature == 0.5 and call.seed == 7
    assert symbol_spans(ix, sha, out.plan) == {"shop/money.py": [(4, 6)], "shop/cart.py": [(8, 10)]}


def test_a_plan_may_create_a_module_with_an_add_step(indexed, db: Database) -> None:
    # Commits that add a module are common (a fifth of the sample's tasks): a schema of
    # existing files only would make them impossible to plan.
    ix, sha = indexed
    answer = json.dumps({"kind": "step", "steps": [
        {"id": 1, "file": "shop/rounding.py", "symbols": ["round_half_up"], "action": "add",
         "description": "a rounding helper", "depends_on": []},
        {"id": 2, "file": "shop/cart.py", "symbols": ["Cart.total"], "action": "modify",
         "description": "use it", "depends_on": [1]},
    ]})
    client, _ = _client(db, [answer])
    out = model_plan(client, plan_messages(TASK, {}), source_files(ix, sha))
    assert out.ok and out.plan is not None and out.plan.files() == ["shop/rounding.py", "shop/cart.py"]
    assert list_calls(db)[0].status == "ok"  # and the schema check agreed


def test_a_plan_kind_is_a_field_of_the_same_schema(indexed, db: Database) -> None:
    ix, sha = indexed
    answer = json.dumps({"kind": "test", "steps": [{"id": 1, "file": "shop/cart.py", "symbols": [],
                                                    "action": "test", "description": "", "depends_on": []}]})
    client, provider = _client(db, [answer])
    out = model_plan(client, plan_messages(TASK, {}, kind="test"), source_files(ix, sha), kind="test")
    assert out.ok and out.plan is not None and out.plan.kind == "test"
    assert provider.requests[0].json_schema["properties"]["kind"]["enum"] == ["test"]


@pytest.mark.parametrize("answer, why", [
    ("I would change the cart.", "not JSON"),
    (json.dumps({"kind": "step", "steps": [{"id": 1, "file": "shop/nowhere.py"}]}), "does not have"),
    (json.dumps({"kind": "step", "steps": [{"id": 1, "file": "../outside.py", "action": "add"}]}), "does not have"),
    (json.dumps({"kind": "step", "steps": [{"id": 1, "file": "shop/cart.py", "depends_on": [9]}]}), "step 9"),
    ("", "empty"),
])
def test_an_unusable_model_plan_is_returned_with_the_reason(indexed, db: Database, answer: str, why: str) -> None:
    ix, sha = indexed
    client, _ = _client(db, [answer])
    out = model_plan(client, plan_messages(TASK, {}), source_files(ix, sha))
    assert not out.ok and out.plan is None and why in (out.error or "") and out.text == answer
    assert list_calls(db)[0].status == "bad_output"  # the schema check recorded it too


def test_a_repair_prompt_shows_plan_edits_and_failure_after_the_first_prompt() -> None:
    first = plan_messages(TASK, {"shop/cart.py": ["Cart.total: def total(self) -> float"]})
    msgs = repair_messages(first, '{"kind": "step", "steps": []}', "shop/cart.py\n<<<<<<< SEARCH\n",
                           "x" * 10_000 + "FAILED tests/test_cart.py::test_total")
    assert msgs[:2] == first and msgs[2] == {"role": "assistant", "content": '{"kind": "step", "steps": []}'}
    assert "<<<<<<< SEARCH" in msgs[3]["content"] and msgs[3]["content"].count("x") < 5000
    assert "FAILED tests/test_cart.py::test_total" in msgs[3]["content"]


def test_a_large_repo_narrows_the_schema_files_to_retrieval_and_its_imports(indexed) -> None:
    ix, sha = indexed
    r = retrieve(ix, sha, TASK)
    assert schema_files(ix, sha, r) == source_files(ix, sha)  # small: every source file
    narrow = schema_files(ix, sha, r, limit=3)
    assert len(narrow) <= 3 and {"shop/cart.py", "shop/money.py"} <= set(narrow)
    assert "shop/stock.py" not in narrow
