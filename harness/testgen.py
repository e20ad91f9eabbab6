"""The model-backed test generator behind ``cra harness validate --supplement``.

A commit whose own tests never fail at the parent still teaches something if a test can
be written that does. The model reads the instruction and the gold patch and writes one
pytest module; ``harness.validation.supplement`` keeps it only if it fails at the parent
and passes (twice) at the commit, in the sandbox. So the model's output is never trusted:
an answer with no code, code that does not parse, or a failed call yields no test.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from appliance.llm.client import LLMClient, LLMError
from harness.validation import GeneratedTest, TaskContext

STAGE = "testgen"
MAX_PATCH_CHARS = 12_000
_FENCE = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.DOTALL)

SYSTEM = (
    "You write pytest tests for a change to a Python repository. Answer with one complete "
    "pytest module in a ```python fence and nothing else. The tests must fail on the code "
    "before the change and pass after it. Import the package under test the way the "
    "repository's own tests do."
)


def testgen_messages(context: TaskContext) -> list[dict[str, str]]:
    """The prompt: instruction, the gold patch (capped) and the names of existing tests."""
    patch = context.gold_patch
    if len(patch) > MAX_PATCH_CHARS:
        patch = patch[:MAX_PATCH_CHARS] + "\n... (patch cut)\n"
    user = (
        f"Change: {context.instruction.strip()}\n\n"
        f"Files changed: {', '.join(context.source_files) or '(none)'}\n"
        f"Existing test files: {', '.join(context.test_files) or '(none)'}\n\n"
        f"The diff:\n```diff\n{patch}```\n"
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def extract_module(text: str) -> str | None:
    """The Python module in an answer (the first fenced block, else the whole text), if it parses."""
    match = _FENCE.search(text)
    code = (match.group(1) if match else text).strip()
    if "def test" not in code:
        return None
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return None
    return code + "\n"


@dataclass
class ModelTestGenerator:
    """Asks the configured model for ``samples`` candidate modules per commit."""

    client: LLMClient
    temperature: float = 0.4
    samples: int = 2
    max_tokens: int = 1024
    adapter: str | None = None

    def generate(self, context: TaskContext) -> list[GeneratedTest]:
        try:
            done = self.client.complete(
                testgen_messages(context), stage=STAGE, temperature=self.temperature,
                n=self.samples, max_tokens=self.max_tokens, adapter=self.adapter,
            )
        except LLMError:
            return []  # recorded by the client; the task simply stays no_fail_to_pass
        tests = []
        for i, text in enumerate(done.texts):
            module = extract_module(text)
            if module is not None:
                tests.append(GeneratedTest(f"tests/test_cra_generated_{context.sha[:8]}_{i}.py", module))
        return tests
