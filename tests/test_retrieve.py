"""Retrieval over a real indexed repo: the right file first, hostile text harmless."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from repo_builder import RepoBuilder

from appliance.errors import NotFound
from harness.index import SymbolIndex
from harness.retrieve import Retrieval, build_query, import_order, query_terms, retrieve

FILES = {
    "src/shop/__init__.py": '"""A small shop."""\n',
    "src/shop/cart.py": '''\
"""Shopping carts."""
from .money import round_cents


class Cart:
    """Items a customer is about to buy."""

    def add_item(self, sku: str, qty: int = 1) -> None:
        """Put an item in the cart."""

    def total(self) -> float:
        """Sum of the prices of all items."""
        return round_cents(0.0)
''',
    "src/shop/money.py": '''\
"""Money helpers."""


def round_cents(amount: float) -> float:
    """Round an amount to whole cents, half to even."""
    return round(amount, 2)


def convert_currency(amount: float, rate: float) -> float:
    """Convert between currencies at an exchange rate."""
    return amount * rate
''',
    "src/shop/shipping.py": '''\
"""Shipping costs."""
from .cart import Cart


class ShippingQuote:
    """What delivery of a cart costs."""

    def estimate(self, cart: Cart, postcode: str) -> float:
        """Estimate the delivery fee for a postcode."""
        return 4.99
''',
    "src/shop/inventory.py": '''\
"""Stock levels."""


class Warehouse:
    def reserve_stock(self, sku: str) -> bool:
        """Hold stock for an order so nobody else buys it."""
        return True
''',
    "tests/test_money.py": '''\
from shop.money import round_cents


def test_round_cents():
    assert round_cents(1.005) == 1.0
''',
}


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("retrieve")
    repo = RepoBuilder(root / "shop")
    sha = repo.commit("Shop", FILES)
    ix = SymbolIndex(root / "ix.db")
    ix.index_commit(repo.path, sha)
    yield ix, sha
    ix.close()


@pytest.mark.parametrize(
    ("instruction", "path", "symbol"),
    [
        # names a function
        ("Fix rounding in `round_cents` for negative amounts", "src/shop/money.py", "round_cents"),
        # names a concept only its docstring mentions
        ("Delivery fee is wrong for some postcodes", "src/shop/shipping.py", "ShippingQuote.estimate"),
        ("Support exchange rates when converting currencies", "src/shop/money.py", "convert_currency"),
        # CamelCase and dotted names split the way code is written
        ("Warehouse.reserve_stock should fail when nothing is left", "src/shop/inventory.py",
         "Warehouse.reserve_stock"),
        ("Add quantity to Cart.add_item", "src/shop/cart.py", "Cart.add_item"),
    ],
)
def test_the_right_file_and_symbol_rank_first(indexed, instruction: str, path: str, symbol: str):
    ix, sha = indexed
    result = retrieve(ix, sha, instruction, exclude=lambda p: p.startswith("tests/"))
    assert result.files[0].path == path, result.files
    assert result.symbols[0].path == path and result.symbols[0].symbol == symbol, result.symbols
    assert result.symbols[0].kind in ("function", "method")
    assert result.files[0].score > 0 and result.seconds >= 0


def test_scores_are_sorted_and_limits_hold(indexed):
    ix, sha = indexed
    result = retrieve(ix, sha, "cart items prices money amount stock", k_files=3, k_symbols=4)
    assert len(result.files) == 3 and len(result.symbols) == 4
    assert [f.score for f in result.files] == sorted((f.score for f in result.files), reverse=True)
    assert [s.score for s in result.symbols] == sorted((s.score for s in result.symbols), reverse=True)


def test_exclude_drops_paths(indexed):
    ix, sha = indexed
    everything = retrieve(ix, sha, "round_cents")
    assert "tests/test_money.py" in [f.path for f in everything.files]
    sources = retrieve(ix, sha, "round_cents", exclude=lambda p: p.startswith("tests/"))
    assert all(not f.path.startswith("tests/") for f in sources.files + sources.symbols)


def test_retrieval_round_trips_through_json(indexed):
    ix, sha = indexed
    result = retrieve(ix, sha, "Estimate shipping for a Cart")
    again = Retrieval.from_dict(json.loads(result.to_json()))
    assert again == result
    assert result.query.startswith('"') and " OR " in result.query


def _ranked(result: Retrieval) -> list[tuple[str, str, float]]:
    return ([(f.path, "", round(f.score, 9)) for f in result.files]
            + [(s.path, s.symbol, round(s.score, 9)) for s in result.symbols])


def test_a_commits_retrieval_does_not_change_as_other_commits_are_indexed(tmp_path):
    # Training prompts are built from retrieval; if BM25's statistics came from every file
    # version ever indexed, the same task would get another prompt once later commits
    # were indexed (and a near-duplicate training example with it).
    repo = RepoBuilder(tmp_path / "shop")
    first = repo.commit("Shop", FILES)
    noise = {f"src/shop/rounding_{i}.py": f'"""Rounding of cents, variant {i}."""\n\n'
             f"def round_cents_{i}(amount):\n    return round(amount, {i})\n" for i in range(12)}
    second = repo.commit("Add rounding variants", noise)
    third = repo.delete(*list(noise)[:6]).commit("Drop half the variants")
    task = "Fix rounding in `round_cents` for negative amounts in the cart"
    with SymbolIndex(tmp_path / "ix.db") as ix:
        ix.index_commit(repo.path, first)
        alone = _ranked(retrieve(ix, first, task))
        for sha in (second, third):
            ix.index_commit(repo.path, sha)
        later = {sha: _ranked(retrieve(ix, sha, task)) for sha in (second, first, third, first)}
        assert _ranked(retrieve(ix, first, task)) == alone
    assert later[first] == alone  # also after the search tables held the other snapshots
    # Each commit's own ranking is what a fresh index of that commit alone gives.
    for sha in (second, third):
        with SymbolIndex(tmp_path / f"fresh-{sha[:7]}.db") as fresh:
            fresh.index_commit(repo.path, sha)
            assert _ranked(retrieve(fresh, sha, task)) == later[sha]
    assert later[second] != alone  # the variants do compete at the second commit


def test_query_terms_drop_noise_and_put_code_first():
    terms = query_terms("Fix the crash (#1234) in parse_iso_date when the HTTPServer is down, see abc1234f")
    assert terms[:6] == ["parse_iso_date", "parse", "iso", "date", "httpserver", "http"]
    for noise in ("the", "1234", "abc1234f", "in", "is", "when"):
        assert noise not in terms
    assert query_terms("") == [] and query_terms("the of a (#12)") == []


def test_an_instruction_with_no_usable_words_returns_nothing(indexed):
    ix, sha = indexed
    result = retrieve(ix, sha, "... (#12) -- !!!")
    assert result.files == [] and result.symbols == [] and result.query == ""


HOSTILE = [
    'fix "unterminated quote',
    "a:b c:d column:filter",
    "(((nested)) parens",
    "NOT AND OR NEAR(a b, 3)",
    "-minus +plus ^caret *star",
    'sku" OR 1=1; DROP TABLE symbols; --',
    "{curly} [square] <angle> $dollar @at",
    "unicode: caf\u00e9 \u00fcber na\u00efve \u65e5\u672c\u8a9e \U0001f600",
    "\x00 null \x1b escape \t tab",
    "AND",
    '""',
    "x" * 5000,
    " ".join(f"word{i}" for i in range(500)),
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_instructions_do_not_raise(indexed, text: str):
    ix, sha = indexed
    result = retrieve(ix, sha, text)
    assert isinstance(result, Retrieval)
    assert len(query_terms(text)) <= 48


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200))
def test_any_text_is_a_valid_query(indexed, text: str):
    ix, sha = indexed
    retrieve(ix, sha, text)  # must not raise
    query = build_query([text, "cart"])
    ix.search(sha, query, 5)  # even a raw term, once quoted, is safe


def test_an_unindexed_commit_is_not_found(indexed):
    ix, _ = indexed
    with pytest.raises(NotFound):
        retrieve(ix, "f" * 40, "cart")


def test_import_order_puts_imported_files_first(indexed):
    ix, sha = indexed
    graph = ix.import_graph(sha)
    ranked = ["src/shop/shipping.py", "src/shop/inventory.py", "src/shop/cart.py", "src/shop/money.py"]
    assert import_order(graph, ranked) == [
        "src/shop/money.py", "src/shop/cart.py", "src/shop/shipping.py", "src/shop/inventory.py",
    ]
    # a cycle keeps the ranking instead of looping
    assert import_order({"a": {"b"}, "b": {"a"}}, ["b", "a"]) == ["a", "b"]


def test_a_huge_instruction_costs_linear_time(indexed):
    """A pasted log in a commit body must not stall retrieval (no regex backtracking blow-up)."""
    ix, sha = indexed
    text = "x" * 200_000 + " " + "a.b" * 20_000 + " `round_cents` is off by one cent"
    result = retrieve(ix, sha, text)
    assert result.seconds < 5
    assert result.symbols[0].symbol == "round_cents"
    assert len(result.query) < 1000
