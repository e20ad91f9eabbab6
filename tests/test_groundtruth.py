"""Ground truth of real commits: changed files, changed symbols, dependency order."""

from __future__ import annotations

from pathlib import Path

from repo_builder import RepoBuilder

from harness.alignment import score_plan
from harness.groundtruth import GroundTruth, gold_plan, ground_truth, order_pairs_from

CORE = '''"""Core."""

LIMIT = 10


class Parser:
    """Parses."""

    mode = "strict"

    def parse(self, text):
        return text.split()

    def reset(self):
        self.mode = "strict"


@property
def size():
    return 1


def helper(x):
    return x + 1
'''

API = '''from pkg.core import Parser


def load(text):
    return Parser().parse(text)
'''


def base_repo(tmp_path: Path) -> tuple[RepoBuilder, str]:
    repo = RepoBuilder(tmp_path / "lib")
    sha = repo.commit("init", {
        "pkg/__init__.py": "",
        "pkg/core.py": CORE,
        "pkg/api.py": API,
        "pkg/cli.py": "from pkg import api\n\n\ndef main():\n    return api.load('x')\n",
        "tests/test_core.py": "def test_parse():\n    assert True\n",
        "CHANGES.md": "# changes\n",
    })
    return repo, sha


def test_a_method_change_names_the_method_not_its_class(tmp_path: Path) -> None:
    repo, parent = base_repo(tmp_path)
    sha = repo.commit("Split on commas", {
        "pkg/core.py": CORE.replace("return text.split()", "return text.split(',')"),
        "tests/test_core.py": "def test_parse():\n    assert 1\n",
        "CHANGES.md": "# changes\n- commas\n",
    })
    truth = ground_truth(repo.path, parent, sha)
    assert truth.files == ["pkg/core.py"]  # the test file is not part of the gold patch
    assert truth.symbols == {"pkg/core.py": ["Parser.parse"]}
    assert truth.other_files == ["CHANGES.md"]
    assert truth.order_pairs == []


def test_class_attribute_decorator_module_constant_and_added_and_deleted_symbols(tmp_path: Path) -> None:
    repo, parent = base_repo(tmp_path)
    new = (CORE.replace('mode = "strict"\n\n    def parse', 'mode = "lenient"\n\n    def parse')
           .replace("@property\n", "@staticmethod\n")
           .replace("LIMIT = 10", "LIMIT = 20")
           .replace("def helper(x):\n    return x + 1\n", "def helper2(x):\n    return x + 2\n"))
    new += "\n\nclass Extra:\n    def go(self):\n        return 0\n"
    sha = repo.commit("Rework core", {"pkg/core.py": new})
    truth = ground_truth(repo.path, parent, sha)
    # Class attribute -> the class; decorator -> the function; LIMIT -> no symbol;
    # helper renamed -> helper2 added and helper deleted; Extra and its method added.
    assert truth.symbols["pkg/core.py"] == ["Parser", "size", "helper2", "Extra", "Extra.go", "helper"]


def test_blank_lines_between_methods_name_no_symbol(tmp_path: Path) -> None:
    repo, parent = base_repo(tmp_path)
    new = CORE.replace('        self.mode = "strict"\n', '        self.mode = "strict"\n\n    def close(self):\n        pass\n')
    sha = repo.commit("Add close", {"pkg/core.py": new})
    assert ground_truth(repo.path, parent, sha).symbols["pkg/core.py"] == ["Parser.close"]


def test_dependency_order_follows_imports_transitively(tmp_path: Path) -> None:
    repo, parent = base_repo(tmp_path)
    sha = repo.commit("Pass a separator through", {
        "pkg/core.py": CORE.replace("def parse(self, text):", "def parse(self, text, sep=None):"),
        "pkg/api.py": API.replace("def load(text):", "def load(text, sep=None):"),
        "pkg/cli.py": "from pkg import api\n\n\ndef main():\n    return api.load('x', ',')\n",
    })
    truth = ground_truth(repo.path, parent, sha)
    # cli imports api (``from pkg import api``: the submodule), api imports core.
    assert truth.order_pairs == [
        ("pkg/api.py", "pkg/cli.py"), ("pkg/core.py", "pkg/api.py"), ("pkg/core.py", "pkg/cli.py")]
    assert truth.files == ["pkg/core.py", "pkg/api.py", "pkg/cli.py"]
    assert truth.symbols == {"pkg/core.py": ["Parser.parse"], "pkg/api.py": ["load"], "pkg/cli.py": ["main"]}


def test_relative_imports_src_layout_and_cycles(tmp_path: Path) -> None:
    repo = RepoBuilder(tmp_path / "lib")
    parent = repo.commit("init", {
        "src/pkg/__init__.py": "",
        "src/pkg/a.py": "from .b import B\n\nA = 1\n",
        "src/pkg/b.py": "from . import a\n\nB = 1\n",
        "src/pkg/c.py": "from pkg.a import A\n\nC = 1\n",
    })
    sha = repo.commit("Bump all", {
        "src/pkg/a.py": "from .b import B\n\nA = 2\n",
        "src/pkg/b.py": "from . import a\n\nB = 2\n",
        "src/pkg/c.py": "from pkg.a import A\n\nC = 2\n",
    })
    truth = ground_truth(repo.path, parent, sha)
    # a and b import each other: no order between them; c imports a (and so b) itself.
    assert truth.order_pairs == [("src/pkg/a.py", "src/pkg/c.py"), ("src/pkg/b.py", "src/pkg/c.py")]
    assert truth.files[-1] == "src/pkg/c.py"
    assert truth.symbols == {p: [] for p in truth.files}  # module-level changes only


def test_added_deleted_and_unparsable_files(tmp_path: Path) -> None:
    repo, parent = base_repo(tmp_path)
    repo.delete("pkg/cli.py")
    sha = repo.commit("Replace the cli", {
        "pkg/main.py": "from pkg.api import load\n\n\ndef run():\n    return load('')\n",
        "pkg/api.py": API + "\ndef broken(:\n",
    })
    truth = ground_truth(repo.path, parent, sha)
    assert truth.added == ["pkg/main.py"] and truth.deleted == ["pkg/cli.py"]
    assert truth.symbols["pkg/main.py"] == ["run"]
    assert truth.symbols["pkg/cli.py"] == ["main"]
    assert truth.unparsed == ["pkg/api.py"]
    assert ("pkg/api.py", "pkg/main.py") in truth.order_pairs


def test_to_dict_round_trip_and_gold_plan_scores_one(tmp_path: Path) -> None:
    repo, parent = base_repo(tmp_path)
    sha = repo.commit("Pass a separator through", {
        "pkg/core.py": CORE.replace("def parse(self, text):", "def parse(self, text, sep=None):"),
        "pkg/api.py": API.replace("def load(text):", "def load(text, sep=None):"),
    })
    truth = ground_truth(repo.path, parent, sha)
    assert GroundTruth.from_dict(truth.to_dict()) == truth
    plan = gold_plan(truth)
    assert [(s.id, s.file, s.action, s.depends_on) for s in plan.steps] == [
        (1, "pkg/core.py", "modify", []), (2, "pkg/api.py", "modify", [1])]
    assert score_plan(plan, truth).score == 1.0


def test_order_pairs_drop_both_directions_of_a_cycle() -> None:
    # a and b import each other (no order between them); c imports b, so comes after both.
    assert order_pairs_from({("a", "b"), ("b", "a"), ("b", "c")}) == [("a", "c"), ("b", "c")]
    assert order_pairs_from({("a", "b"), ("b", "c")}) == [("a", "b"), ("a", "c"), ("b", "c")]
