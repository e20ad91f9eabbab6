"""The plan format: round trips, a model's sloppy JSON, and the constrained-output schema."""

from __future__ import annotations

import json

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.errors import BadInput
from harness.plans import Plan, PlanFormatError, PlanStep, is_new_file_path, plan_json_schema

FILES = ["pkg/core.py", "pkg/api.py", "pkg/util.py"]


def two_step_plan() -> Plan:
    return Plan(
        kind="step",
        source="model",
        steps=[
            PlanStep(1, "pkg/core.py", ["Parser.parse"], "modify", "accept bytes", []),
            PlanStep(2, "pkg/api.py", ["load"], "modify", "pass bytes through", [1]),
        ],
    )


def test_to_json_and_back_is_identity() -> None:
    plan = two_step_plan()
    again = Plan.from_json(plan.to_json())
    assert again == plan
    assert json.loads(plan.to_json())["version"] == 1


def test_model_answer_wrapped_in_prose_and_a_fence_is_read() -> None:
    body = json.dumps(two_step_plan().model_dict(), indent=2)
    text = f"Sure! Here is the plan:\n```json\n{body}\n```\nLet me know if you need more."
    plan = Plan.from_json(text, source="model")
    assert [s.file for s in plan.steps] == ["pkg/core.py", "pkg/api.py"]
    assert plan.steps[1].depends_on == [1]


def test_extra_fields_are_ignored_and_optional_ones_defaulted() -> None:
    text = json.dumps({
        "kind": "step", "reasoning": "because", "steps": [
            {"file": "./pkg/core.py", "confidence": 0.9},
            {"file": "pkg/api.py", "symbols": "load", "depends_on": 1},
        ],
    })
    plan = Plan.from_json(text)
    first, second = plan.steps
    assert (first.id, first.file, first.symbols, first.action, first.description, first.depends_on) == (
        1, "pkg/core.py", [], "modify", "", [])
    assert (second.id, second.symbols, second.depends_on) == (2, ["load"], [1])
    assert plan.source == "model"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("I think you should edit core.py", "not JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"kind": "step"}', "no 'steps'"),
        ('{"steps": {"file": "a.py"}}', "must be a list"),
        ('{"steps": [{"symbols": ["f"]}]}', "step 1 has no 'file'"),
        ('{"steps": ["a.py"]}', "step 1 must be an object"),
        ('{"steps": [{"file": "a.py", "action": "rewrite"}]}', "unknown action 'rewrite'"),
        ('{"kind": "grand", "steps": []}', "unknown plan kind"),
        ('{"steps": [{"id": "x", "file": "a.py"}]}', "'id' must be an integer"),
        ('{"steps": [{"file": "a.py", "symbols": [1]}]}', "'symbols' must be a list of strings"),
        ('{"steps": [{"file": "a.py", "depends_on": ["1"]}]}', "'depends_on' must be a list"),
        ('{"steps": [{"id": 1, "file": "a.py", "depends_on": [7]}]}', "depends on step 7"),
        ('{"steps": [{"id": 1, "file": "a.py", "depends_on": [1]}]}', "depends on itself"),
        ('{"steps": [{"id": 1, "file": "a.py"}, {"id": 1, "file": "b.py"}]}', "ids repeat"),
        ('{"steps": [{"id": 1, "file": "a.py", "depends_on": [2]}, {"id": 2, "file": "b.py", "depends_on": [1]}]}',
         "cycle"),
    ],
)
def test_bad_plans_raise_one_clear_error(text: str, fragment: str) -> None:
    with pytest.raises(PlanFormatError) as info:
        Plan.from_json(text)
    assert fragment in str(info.value)
    assert info.value.exit_code == 2  # a BadInput: the CLI prints one line


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=5) | st.sampled_from(FILES),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["kind", "steps", "id", "file", "symbols", "action", "depends_on", "x"]), inner, max_size=5),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(_json)
def test_any_json_is_a_plan_or_a_plan_format_error(value: object) -> None:
    try:
        plan = Plan.from_json(json.dumps(value))
    except PlanFormatError:
        return
    assert all(isinstance(s.file, str) and s.file for s in plan.steps)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_any_text_is_a_plan_or_a_plan_format_error(text: str) -> None:
    try:
        Plan.from_json(text)
    except PlanFormatError:
        pass


def test_ordered_steps_puts_dependencies_first_and_keeps_written_order_otherwise() -> None:
    plan = Plan(steps=[
        PlanStep(1, "pkg/api.py", depends_on=[3]),
        PlanStep(2, "pkg/util.py"),
        PlanStep(3, "pkg/core.py"),
    ])
    assert [s.id for s in plan.ordered_steps()] == [3, 1, 2]
    assert plan.files() == ["pkg/core.py", "pkg/api.py", "pkg/util.py"]


def test_files_and_symbols_can_leave_test_steps_out() -> None:
    plan = Plan(steps=[PlanStep(1, "pkg/core.py", ["f"]), PlanStep(2, "tests/test_core.py", ["test_f"], "test")])
    assert plan.files(include_tests=False) == ["pkg/core.py"]
    assert plan.symbols(include_tests=False) == {"pkg/core.py": ["f"]}
    assert plan.symbols()["tests/test_core.py"] == ["test_f"]


def test_schema_accepts_a_plan_of_index_files_and_rejects_others() -> None:
    schema = plan_json_schema(FILES)
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(two_step_plan().model_dict(), schema)
    bad = two_step_plan().model_dict()
    bad["steps"][0]["file"] = "pkg/imaginary.py"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
    missing = two_step_plan().model_dict()
    del missing["steps"][0]["depends_on"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(missing, schema)
    assert schema["properties"]["steps"]["items"]["properties"]["file"]["enum"] == sorted(FILES)


def test_schema_with_new_files_lets_only_add_and_test_steps_create_safe_paths() -> None:
    schema = plan_json_schema(FILES, new_files=True)
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(two_step_plan().model_dict(), schema)

    def with_step(file: str, action: str) -> dict:
        plan = two_step_plan().model_dict()
        plan["steps"][0].update(file=file, action=action)
        return plan

    for file, action in [("pkg/rounding.py", "add"), ("tests/test_rounding.py", "test"), ("new_top.py", "add")]:
        jsonschema.validate(with_step(file, action), schema)
        assert is_new_file_path(file)
    for file, action in [("pkg/rounding.py", "modify"), ("../outside.py", "add"), ("pkg/../x.py", "add"),
                         ("/etc/x.py", "add"), (".hidden/x.py", "add"), ("pkg/notes.txt", "add")]:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(with_step(file, action), schema)
        assert action == "modify" or not is_new_file_path(file)


def test_schema_with_new_files_compiles_to_a_llama_cpp_grammar() -> None:
    llama_grammar = pytest.importorskip("llama_cpp.llama_grammar", reason="the llama extra is not installed")
    gbnf = llama_grammar.json_schema_to_gbnf(json.dumps(plan_json_schema(FILES, new_files=True)))
    assert "steps-item-1-file ::=" in gbnf  # the second alternative: a new file by pattern
    llama_grammar.LlamaGrammar.from_string(gbnf, verbose=False)


def test_schema_keeps_kind_a_field_and_can_pin_it() -> None:
    assert plan_json_schema(FILES)["properties"]["kind"]["enum"] == ["step", "meta", "test"]
    pinned = plan_json_schema(FILES, kind="test")
    meta_plan = {"kind": "meta", "steps": two_step_plan().model_dict()["steps"]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(meta_plan, pinned)
    # Whatever the schema lets through, the parser reads.
    assert Plan.from_dict(two_step_plan().model_dict(), source="model").files() == ["pkg/core.py", "pkg/api.py"]


def test_schema_needs_files() -> None:
    with pytest.raises(BadInput, match="at least one file"):
        plan_json_schema([])


def test_llama_cpp_turns_the_schema_into_a_grammar_of_index_files() -> None:
    grammar = pytest.importorskip("llama_cpp.llama_grammar", reason="llama-cpp-python belongs to the 'llama' extra")
    gbnf = grammar.json_schema_to_gbnf(json.dumps(plan_json_schema(FILES)))
    for name in FILES:
        assert name in gbnf
    assert "imaginary" not in gbnf
