"""``cra demo``: the main job on the bundled sample, with no network, end to end.

It plays both sides of the air gap on one machine: package the sample (connected side,
but from a local wheel folder with no index), export it to a USB folder, import that into
a fresh home (the air-gapped side). Then the whole loop on the air-gapped side: validate
every kept commit, build a small local model (``appliance.demo_model``: the test recipe,
about a minute on two cores), and one day -> sleep -> eval cycle of the scope slot
(``appliance.evaluation.cycle``): the pipeline on every task, triples, a training plan,
a curated dataset cut at the holdout's start, a LoRA trained on it, evaluated on the
later commits against the base model, with its report. ``package_only`` stops after the
import (what the funnel needs).

The demo's air-gapped home (a sub-folder of the home the demo was given, not that home
itself) gets its own ``cra.toml`` (the model, the converter, gates sized for a sample of
about 30 tasks) and ``adapters/scope.toml`` (a recipe for the small model), so every
command the demo prints next works there as it is.

The sample ships inside the ``appliance`` package (``appliance/data/inkwell.bundle``, a
link to ``corpus/samples/inkwell.bundle`` in a checkout), so the demo runs from an
installed wheel too; only the sample's dependency wheels (``--wheels``, or ``.cache/wheels``
that ``scripts/bootstrap.sh`` fills) and llama.cpp's converters (the llama-cpp-python sdist
it puts in ``.cache/``) come from outside.
"""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import appliance
from appliance.atomic import write_atomic
from appliance.config import Home, Settings, load_settings
from appliance.db.core import Database
from appliance.errors import BadInput

SAMPLE = "inkwell"
PROJECT_ROOT = Path(appliance.__file__).resolve().parents[1]  # a checkout's root (or site-packages)
SAMPLE_BUNDLE = Path(str(resources.files("appliance").joinpath("data", f"{SAMPLE}.bundle")))
WHEELS_FOLDER = Path(".cache") / "wheels"
CACHE = PROJECT_ROOT / ".cache"
SLOT = "scope"

DEMO_SETTINGS = """\
# Written by cra demo for its air-gapped home: the small local model, llama.cpp's converter,
# and gates sized for the sample's ~30 tasks (a real corpus wants min_holdout in the
# hundreds: cra eval says how many an effect needs).
[llm]
provider = "llama_cpp"
model = "{gguf}"
n_ctx = 2048
max_retries = 0

[training]
llama_cpp_dir = "{converter}"

[evaluation]
min_holdout = 6
frozen_size = 3
holdout_share = 0.35
max_attempts = 2
"""

DEMO_RECIPE = """\
# Written by cra demo: a scope adapter for the demo's small model, trained in seconds on a CPU.
format_version = 1
slot = "scope"
description = "File relevance on the demo model: instruction -> the files the commit changed."

[model]
base = "{hf}"
gguf = "{gguf}"
chat_template = "model"
eos_token = "<|im_end|>"

[lora]
r = 8
alpha = 16
dropout = 0.0
target_modules = "all-linear"

[training]
method = "sft"
learning_rate = 2e-2
epochs = 8
batch_size = 4
gradient_accumulation_steps = 1
max_length = 2048
warmup_ratio = 0.0
seed = 7
save_steps = 50
logging_steps = 5
gguf_outtype = "f32"
"""


@dataclass
class DemoResult:
    home: Path
    connected_home: Path
    usb: Path
    airgapped_home: Path
    funnel: dict[str, Any]
    next_commands: list[str] = field(default_factory=list)
    validated: dict[str, int] = field(default_factory=dict)
    model: Path | None = None
    cycles: list[Any] = field(default_factory=list)
    evaluation_id: int | None = None
    report: Path | None = None


def next_commands(airgapped: Path, name: str = SAMPLE, *, loop: bool = True) -> list[str]:
    """What to run next on the demo's air-gapped home (``--home`` named: it is not CRA_HOME)."""
    home = f"cra --home {shlex.quote(str(airgapped))}"
    if not loop:
        return [f"{home} corpus funnel {name}", f"{home} harness validate {name}", f"{home} harness tasks {name}",
                f"{home} harness run {name}", f"{home} triples build {name}"]
    return [
        f"{home} report list; {home} report show 1",
        f"{home} adapters list",
        f"{home} cycle --slot {SLOT} --cycles 2      # more day -> sleep -> eval cycles",
        f"{home} eval --candidate {SLOT}:v1 --baseline base",
        f"{home} harness runs {name}; {home} harness show 1",
    ]


def default_wheels(home: Home) -> Path:
    """``$CRA_HOME/.cache/wheels``, else the checkout's (``scripts/bootstrap.sh`` fills it)."""
    for root in (home.root, PROJECT_ROOT):
        if (root / WHEELS_FOLDER).is_dir():
            return root / WHEELS_FOLDER
    return home.root / WHEELS_FOLDER


def find_converter(explicit: Path | None = None, home: Home | None = None) -> Path:
    """llama.cpp's converters for the demo: ``explicit``, else ``$CRA_LLAMA_CPP_SRC``, else the
    llama-cpp-python sdist scripts/bootstrap.sh downloaded into ``.cache/`` (of the home or of
    cra's checkout); ``BadInput`` saying how to get one."""
    for candidate in (explicit, os.environ.get("CRA_LLAMA_CPP_SRC")):
        if candidate:
            return Path(candidate).resolve()
    for root in ([home.root] if home else []) + [PROJECT_ROOT]:
        found = sorted((root / ".cache").glob("llama_cpp_python-*.tar.gz"))
        if found:
            return found[-1]
    raise BadInput("the demo needs llama.cpp's converter to make GGUF files, and found none",
                   path=CACHE, hint="run scripts/bootstrap.sh once (it downloads the llama-cpp-python sdist), "
                                    "or pass --llama-cpp DIR (a llama.cpp checkout)")


def run_demo(
    home: Home,
    *,
    wheels: Path | None = None,
    bundle: Path = SAMPLE_BUNDLE,
    progress: Callable[[str, int, int], None] | None = None,
    package_only: bool = False,
    llama_cpp: Path | None = None,
    workers: int = 2,
) -> DemoResult:
    from appliance.db.corpus import funnel
    from appliance.packaging.bundle import export_package, import_package
    from appliance.packaging.corpus import add_repo

    wheels = wheels or default_wheels(home)
    if not bundle.is_file():
        raise BadInput("the sample bundle is missing", path=bundle,
                       hint="reinstall cra: its wheel ships the sample (appliance/data/inkwell.bundle)")
    if not wheels.is_dir() or not any(wheels.glob("*.whl")):
        raise BadInput(
            "no wheels for the sample's dependencies", path=wheels,
            hint="run scripts/bootstrap.sh once (it downloads them), or pass --wheels DIR",
        )
    converter = None if package_only else find_converter(llama_cpp, home)
    base = home.root / "demo"
    if base.exists():
        shutil.rmtree(base)
    connected, usb, airgapped = Home(base / "connected"), base / "usb", Home(base / "airgapped")

    settings = Settings()
    settings.packaging.find_links = [str(wheels.resolve())]
    settings.packaging.no_index = True
    with Database(connected.db_path) as db:
        add_repo(connected, db, settings, str(bundle), name=SAMPLE, progress=progress)
        export_package(connected, SAMPLE, usb)
    with Database(airgapped.db_path) as db:
        import_package(airgapped, usb, db)
        data = funnel(db, SAMPLE)
    result = DemoResult(home.root, connected.root, usb, airgapped.root, data,
                        next_commands(airgapped.root, loop=not package_only))
    if package_only:
        return result
    assert converter is not None
    with Database(airgapped.db_path) as db:
        _loop(airgapped, db, converter, result, progress=progress or (lambda step, done, total: None),
              workers=workers)
    return result


def _loop(home: Home, db: Database, converter: Path, result: DemoResult, *,
          progress: Callable[[str, int, int], None], workers: int) -> None:
    """The air-gapped side's whole loop: validate, a model, one cycle of the scope slot."""
    from appliance.evaluation.cycle import run_cycles
    from appliance.llm import LLMClient
    from harness.validation import validate_repo

    result.validated = validate_repo(home, db, SAMPLE, workers=workers,
                                     progress=lambda done, total, task: progress("validate", done, total))
    result.model = setup_model(home, converter, progress=progress)
    _one_torch_thread()
    settings = load_settings(home)
    client = LLMClient.from_config(settings.llm, log=db)
    outcome = run_cycles(home, db, settings, SLOT, cycles=1, client=client, progress=progress)
    result.cycles = outcome.cycles
    last = outcome.cycles[-1]
    result.evaluation_id = last.evaluation_id
    if last.evaluation_id is not None:
        from appliance.db.evaluation import get_evaluation

        row = get_evaluation(db, last.evaluation_id)
        result.report = home.root / row.report / "report.html" if row.report else None


def _one_torch_thread() -> None:
    """The demo trains a model of 200k parameters: there a second torch thread only fights the
    first (and llama.cpp) for two cores; one is several times faster (``appliance.demo_model``)."""
    try:
        import torch
    except ImportError:
        return  # cra train says what to install
    torch.set_num_threads(1)


def setup_model(home: Home, converter: Path, *, progress: Callable[[str, int, int], None] | None = None) -> Path:
    """The demo model in ``home/models/demo`` (built once per recipe into ``.cache/``), with
    the home's ``cra.toml`` and ``adapters/scope.toml`` written for it; returns its GGUF."""
    from appliance import demo_model
    from appliance.training.gguf import find_converter as converter_dir

    tick = progress or (lambda step, done, total: None)
    tick("model", 0, 1)
    model = demo_model.build(CACHE / f"demo-model-{demo_model.RECIPE_VERSION}", _converter(home, converter, converter_dir))
    local = home.root / "models" / "demo"
    if not (local / "done.json").is_file():
        shutil.copytree(model.root, local, dirs_exist_ok=True)
    gguf = local / "model.gguf"
    write_atomic(home.config_path, DEMO_SETTINGS.format(gguf=gguf, converter=converter))
    write_atomic(home.adapters / f"{SLOT}.toml", DEMO_RECIPE.format(hf=local / "hf", gguf=gguf))
    tick("model", 1, 1)
    return gguf


def _converter(home: Home, path: Path, converter_dir: Callable[..., Path]) -> Path:
    """A folder with the converter scripts, unpacking an sdist the first time."""
    from appliance.config import TrainingConfig

    return converter_dir(home, TrainingConfig(llama_cpp_dir=str(path)))
