"""curate-data, datasets and imports: real DBs, real files, exact counts, and the exports
trained for 5 steps with trl on the tiny test model."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from training_world import BASE_TS, DAY, World, jsonl, write_catalog

from appliance.cli import main
from appliance.config import Home, TrainingConfig
from appliance.db.core import Database
from appliance.db.training import dataset_rows, get_dataset, list_datasets, list_imports
from appliance.errors import BadInput, GuardrailError, LeakError
from appliance.training import dedup
from appliance.training.curate import (
    CurateOptions,
    Curator,
    _domain_quotas,
    _water_fill,
    check_cutoff,
)
from appliance.training.imports import import_dataset

WORDS = [f"w{i}" for i in range(4000)]
CUTOFF = BASE_TS + 365 * DAY


def text(rng: random.Random, n: int = 120) -> str:
    return " ".join(rng.choices(WORDS, k=n))


def tweak(s: str, k: int = 1) -> str:
    words = s.split()
    for j in range(k):
        words[5 + 7 * j] = f"changed{j}"
    return " ".join(words)


def curate(db: Database, home: Home, config: TrainingConfig | None = None, domains: dict[str, str] | None = None,
           **kw) -> object:
    opts = {"slot": "execute-code", "kind": "sft", "cutoff_ts": CUTOFF, "replay_share": 0.15, **kw}
    domains = domains or {}
    return Curator(db, home, config or TrainingConfig(), CurateOptions(**opts), lambda r: domains.get(r, r)).run()


def funnel(ds) -> dict[str, int]:
    return {s["step"]: s["removed"] for s in ds.counts["funnel"]}


# ----------------------------------------------------------------------------- sketches


def test_sketch_similarity_tracks_jaccard_and_identical_texts_collide() -> None:
    rng = random.Random(0)
    base = text(rng, 300)
    a, b, c = (dedup.normalise(t) for t in (base, tweak(base, 2), text(rng, 300)))
    s = dedup.sketch([a, b, c, a])
    assert (s[0] == s[3]).all()
    assert dedup.similarity(s[0], s[1]) > 0.85 and dedup.similarity(s[0], s[2]) < 0.1
    bands, rows = dedup.lsh_params(0.85)
    assert bands * rows <= dedup.BINS and bands >= 2
    short = dedup.sketch([b"src/app.py", b"src/app.py", b"", b"x"])
    assert (short[0] == short[1]).all() and not (short[0] == short[3]).all()


def test_quota_and_water_filling_are_exact() -> None:
    assert _domain_quotas({0: 60, 1: 10, 2: 10, 3: 10, 4: 10}, 0.2) == {0: 10, 1: 10, 2: 10, 3: 10, 4: 10}
    assert _domain_quotas({0: 5, 1: 5, 2: 5, 3: 5, 4: 5, 5: 5}, 0.2) == dict.fromkeys(range(6), 5)
    assert _water_fill({0: 40, 1: 20}, 10) == {0: 5, 1: 5}
    assert _water_fill({0: 40, 1: 2}, 10) == {0: 8, 1: 2}


# ----------------------------------------------------------------------------- filters


@pytest.fixture
def world(db: Database) -> World:
    w = World(db)
    w.repo("alpha", 40)
    return w


def test_exact_and_near_duplicates_are_removed_and_counted_exactly(world: World, home: Home, tmp_path: Path) -> None:
    rng = random.Random(1)
    bases = [(text(rng), text(rng, 60)) for _ in range(20)]
    rows = [{"i": i, "prompt": p, "answer": a} for i, (p, a) in enumerate(bases)]
    # 4 near duplicates: one word changed in both the prompt and the answer.
    rows += [{"i": 20 + j, "prompt": tweak(bases[j][0]), "answer": tweak(bases[j][1])} for j in range(4)]
    # 3 rows sharing a prompt with an earlier one but with another answer: kept (not duplicates).
    rows += [{"i": 24 + j, "prompt": bases[j][0], "answer": text(rng, 60)} for j in range(3)]
    world.triples("alpha", rows)
    # 2 exact duplicates, arriving as an import of two of the triples' very prompt and answer.
    dump = tmp_path / "dups.jsonl"
    dump.write_text("".join(json.dumps({"prompt": [{"role": "user", "content": bases[j][0]}],
                                        "completion": [{"role": "assistant", "content": bases[j][1]}]}) + "\n"
                            for j in (5, 6)))
    import_dataset(world.db, dump, fmt="prompt-completion", license="MIT")
    ds = curate(world.db, home).dataset
    removed = funnel(ds)
    assert removed["exact duplicates"] == 2 and removed["near duplicates"] == 4
    assert ds.rows_train + ds.rows_valid == 20 + 3
    assert ds.source_mix == {"gold": 21, "teacher": 0, "self": 0, "imported": 2}


def test_the_domain_cap_holds_exactly_with_repos_balanced(db: Database, home: Home) -> None:
    w = World(db)
    sizes = {"a1": 40, "a2": 20, "b": 10, "c": 10, "d": 10, "e": 10}
    domains = {"a1": "big", "a2": "big", "b": "db", "c": "cli", "d": "ast", "e": "vcs"}
    rng = random.Random(2)
    for repo, n in sizes.items():
        w.repo(repo, n)
        w.triples(repo, [{"i": i, "prompt": text(rng), "answer": text(rng, 40)} for i in range(n)])
    ds = curate(db, home, domains=domains).dataset
    assert funnel(ds)["domain cap"] == 50
    assert ds.domain_mix == {"ast": 10, "big": 10, "cli": 10, "db": 10, "vcs": 10}
    assert ds.counts["repos"] == {"a1": 5, "a2": 5, "b": 10, "c": 10, "d": 10, "e": 10}
    assert max(ds.domain_mix.values()) / sum(ds.domain_mix.values()) == 0.2
    assert ds.notes == [] or all("cap" not in n for n in ds.notes)


def test_one_domain_is_built_anyway_and_says_so(world: World, home: Home) -> None:
    rng = random.Random(3)
    world.triples("alpha", [{"i": i, "prompt": text(rng), "answer": text(rng, 40)} for i in range(10)])
    ds = curate(world.db, home).dataset
    assert ds.rows_train + ds.rows_valid == 10
    assert any("only 1 domain (alpha)" in n and "cannot hold" in n for n in ds.notes)
    assert get_dataset(world.db, ds.id).notes == ds.notes  # recorded on the row


def test_replay_share_is_exact_and_rows_keep_their_provenance(db: Database, home: Home) -> None:
    w = World(db)
    rng = random.Random(4)
    w.repo("old", 40)
    w.repo("new", 85)
    w.triples("old", [{"i": i, "prompt": text(rng), "answer": text(rng, 40)} for i in range(40)])
    w.triples("new", [{"i": i, "prompt": text(rng), "answer": text(rng, 40)} for i in range(85)])
    first = curate(db, home, repos=("old",)).dataset
    assert first.counts["replay"]["added"] == 0 and "no earlier dataset" in " ".join(first.notes)
    second = curate(db, home, repos=("new",)).dataset
    rows = second.rows_train + second.rows_valid
    assert (rows, second.counts["replay"]["added"]) == (100, 15)  # 15 / 100 = 0.15 exactly
    stored = dataset_rows(db, second.id)
    replayed = [r for r in stored if r.replay_of is not None]
    assert len(replayed) == 15 and {r.replay_of for r in replayed} == {first.id}
    assert {r.repo for r in replayed} == {"old"} and all(r.triple_id for r in replayed)
    folder = home.root / second.path
    lines = jsonl(folder / "train.jsonl") + jsonl(folder / "valid.jsonl")
    assert sum(1 for line in lines if line["replay_of"] == first.id) == 15
    # Time-ordered split: every validation row is at least as new as every training row.
    train, valid = jsonl(folder / "train.jsonl"), jsonl(folder / "valid.jsonl")
    assert len(valid) == 10 and max(r["author_ts"] for r in train) <= min(r["author_ts"] for r in valid)
    meta = json.loads((folder / "dataset.json").read_text())
    assert meta["id"] == second.id and meta["cutoff_ts"] == CUTOFF and meta["content_hash"] == second.content_hash


def test_a_cutoff_that_would_leak_is_refused_and_writes_nothing(world: World, home: Home) -> None:
    rng = random.Random(5)
    world.triples("alpha", [{"i": i, "prompt": text(rng), "answer": text(rng, 40)} for i in range(40)])
    config = TrainingConfig(holdout_start="2020-10-01")
    with pytest.raises(LeakError, match="after the evaluation holdout"):
        check_cutoff(CUTOFF, config)
    with pytest.raises(LeakError, match="in the future"):
        check_cutoff(2_000_000_000 * 2, TrainingConfig())
    ok = BASE_TS + 10 * DAY  # rows 0..9 are before it
    check_cutoff(ok, config)
    ds = curate(world.db, home, cutoff_ts=ok).dataset
    assert funnel(ds)["after the cutoff"] == 30 and ds.rows_train + ds.rows_valid == 10
    assert all(r.author_ts < ok for r in dataset_rows(world.db, ds.id))
    # Through the CLI the refusal leaves no dataset and no folder behind.
    (home.root / "cra.toml").write_text('[training]\nholdout_start = "2020-10-01"\n')
    assert main(["train-plan"]) == 0
    before = len(list_datasets(world.db))
    assert main(["curate-data", "--plan", "1", "--cutoff", "2021-06-01"]) == 2
    assert len(list_datasets(world.db)) == before
    assert not [p for p in (home.var / "datasets").iterdir() if p.name.startswith(".tmp")]


def test_the_self_generated_guardrail_refuses_unless_forced_or_taught(world: World, home: Home) -> None:
    rng = random.Random(6)
    run = world.run("alpha", 0, model="coder-3b", status="resolved", attempts=[{"resolved": True}])
    world.triples("alpha", [{"i": i, "prompt": text(rng), "answer": text(rng, 40), "origin": "run", "runs": [run]}
                            for i in range(8)])
    world.triples("alpha", [{"i": 8 + i, "prompt": text(rng), "answer": text(rng, 40)} for i in range(2)])
    with pytest.raises(GuardrailError, match=r"8 of 10 rows \(80%\) are self-generated by models under 6B"):
        curate(world.db, home)
    assert list_datasets(world.db) == []
    forced = curate(world.db, home, force=True).dataset
    assert forced.source_mix["self"] == 8 and any("forced past the guardrail" in n for n in forced.notes)
    taught = curate(world.db, home, config=TrainingConfig(teacher_models=["coder-*"]), replay_share=0.2).dataset
    assert taught.source_mix["teacher"] == 8 and taught.source_mix["self"] == 0
    big = curate(world.db, home, config=TrainingConfig(model_params_b={"coder-3b": 32.0}), replay_share=0.1).dataset
    assert big.source_mix["self"] == 8  # a 32B model's own runs are not under the guardrail


def test_rows_longer_than_the_recipe_maximum_are_dropped_and_counted(world: World, home: Home, tmp_path: Path) -> None:
    pytest.importorskip("tokenizers")
    pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(["[UNK]", *WORDS])}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(tmp_path / "tok")
    rng = random.Random(7)
    world.triples("alpha", [{"i": i, "prompt": text(rng, 50 if i % 2 else 150), "answer": text(rng, 10)}
                            for i in range(10)])
    ds = curate(world.db, home, tokenizer=str(tmp_path / "tok"), max_tokens=100).dataset
    assert funnel(ds)["too long"] == 5 and ds.rows_train + ds.rows_valid == 5
    assert ds.params["max_tokens"] == 100


def _word_tokenizer(folder: Path) -> Path:
    """A real HF tokenizer folder (a word-level vocabulary of WORDS): one token per word."""
    pytest.importorskip("tokenizers")
    pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(["[UNK]", *WORDS])}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(folder)
    return folder


def test_token_lengths_come_from_the_slots_recipe_by_default_or_the_one_named(home: Home, db: Database,
                                                                              tmp_path: Path, capsys) -> None:
    w = World(db)
    rng = random.Random(17)
    w.repo("alpha", 30)
    w.triples("alpha", [{"i": i, "prompt": text(rng, 50 if i % 2 else 150), "answer": text(rng, 10)}
                        for i in range(10)])
    assert main(["train-plan", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)["id"]
    args = ["curate-data", "--plan", str(plan), "--slot", "execute-code", "--cutoff", "2021-06-01"]
    # The committed recipe's base model is not in this home: nothing measured, and it says so.
    assert main([*args, "--json"]) == 0
    [unmeasured] = json.loads(capsys.readouterr().out)
    assert unmeasured["rows_train"] + unmeasured["rows_valid"] == 10
    assert "not measured" in unmeasured["params"]["recipe"]["note"]
    assert unmeasured["params"]["recipe"]["path"].endswith("execute-code.toml")
    # CRA_HOME's recipe, its base a tokenizer folder that is here: rows over max_length are dropped.
    _word_tokenizer(home.root / "models" / "words")
    committed = (Path(__file__).resolve().parents[1] / "adapters" / "execute-code.toml").read_text()
    own = committed.replace('base = "models/qwen2.5-coder-3b"', 'base = "models/words"').replace(
        "max_length = 8192", "max_length = 100")
    (home.root / "adapters").mkdir(exist_ok=True)
    (home.root / "adapters" / "execute-code.toml").write_text(own)
    assert main([*args, "--json"]) == 0
    [measured] = json.loads(capsys.readouterr().out)
    replayed = measured["counts"]["replay"]["added"]  # from the first dataset: never re-measured away
    assert measured["rows_train"] + measured["rows_valid"] == 5 + replayed
    assert {s["step"]: s["removed"] for s in measured["counts"]["funnel"]}["too long"] == 5
    assert measured["params"]["max_tokens"] == 100 and measured["params"]["tokenizer"].endswith("words")
    assert "note" not in measured["params"]["recipe"]
    # A recipe named on the command line, here with a longer maximum, decides instead.
    longer = tmp_path / "long.toml"
    longer.write_text(own.replace("max_length = 100", "max_length = 1000"))
    assert main([*args, "--recipe", str(longer), "--json"]) == 0
    [named] = json.loads(capsys.readouterr().out)
    # Every row fits: the same rows as the unmeasured build, so the same dataset (no new version).
    assert named["rows_train"] + named["rows_valid"] == 10 and named["id"] == unmeasured["id"]
    # Refusals: two length rules, a recipe for another slot, a recipe whose base is missing.
    assert main([*args, "--recipe", str(longer), "--tokenizer", str(home.root / "models" / "words"),
                 "--max-tokens", "5"]) == 2
    assert "exclude each other" in capsys.readouterr().err
    scope = tmp_path / "scope.toml"
    scope.write_text(own.replace('slot = "execute-code"', 'slot = "scope"'))
    assert main([*args, "--recipe", str(scope)]) == 2
    assert "for the scope slot, not execute-code" in capsys.readouterr().err
    missing = tmp_path / "missing.toml"
    missing.write_text(own.replace('base = "models/words"', 'base = "models/nowhere"'))
    assert main([*args, "--recipe", str(missing)]) == 2
    assert "models/nowhere does not exist" in capsys.readouterr().err


def test_the_same_rows_are_the_same_dataset(world: World, home: Home) -> None:
    rng = random.Random(8)
    world.triples("alpha", [{"i": i, "prompt": text(rng), "answer": text(rng, 40)} for i in range(12)])
    first = curate(world.db, home)
    again = curate(world.db, home)
    assert first.created and not again.created and first.dataset.id == again.dataset.id
    assert len(list((home.var / "datasets").iterdir())) == 1


# ----------------------------------------------------------------------------- imports


COMMITPACK = {"commit": "abc", "old_file": "pkg/mod.py", "new_file": "pkg/mod.py",
              "old_contents": "def f():\n    return 1\n\n\ndef g():\n    return 2\n",
              "new_contents": "def f():\n    return 10\n\n\ndef g():\n    return 2\n",
              "subject": "Make f return ten", "message": "Make f return ten\n", "lang": "Python",
              "license": "mit", "repos": "example/pkg"}


def test_commitpackft_rows_become_execute_stage_search_replace_examples(db: Database, tmp_path: Path) -> None:
    from harness.edits import apply_to_texts, parse_edits
    from harness.triples import EXECUTE_SYSTEM

    path = tmp_path / "commitpackft.jsonl"
    same = COMMITPACK | {"new_contents": COMMITPACK["old_contents"]}
    path.write_text(json.dumps(COMMITPACK) + "\n" + json.dumps(same) + "\n\n")
    result = import_dataset(db, path, fmt="commitpackft", license="MIT")
    assert result.created and result.dataset.rows == 1 and result.dataset.skipped == {"no change": 1}
    assert result.dataset.license == "MIT" and result.dataset.slot == "execute-code"
    row = db.one("SELECT prompt, completion, meta FROM imported_rows")
    prompt, completion = json.loads(row["prompt"]), json.loads(row["completion"])
    assert prompt[0] == {"role": "system", "content": EXECUTE_SYSTEM}
    assert "Make f return ten" in prompt[1]["content"] and "return 1\n" in prompt[1]["content"]
    edits = parse_edits(completion[0]["content"])
    new, applied = apply_to_texts({"pkg/mod.py": COMMITPACK["old_contents"]}, edits)
    assert applied.ok and new["pkg/mod.py"] == COMMITPACK["new_contents"]
    assert json.loads(row["meta"])["repos"] == "example/pkg"
    assert not import_dataset(db, path, fmt="commitpackft", license="MIT").created  # same file: once


def test_a_corrupt_import_is_refused_with_its_line_number_and_nothing_imported(home: Home, db: Database,
                                                                                 tmp_path: Path, capsys) -> None:
    path = tmp_path / "broken.jsonl"
    good = json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})
    path.write_text(good + "\n" + good.replace("q", "q2") + "\n" + '{"messages": [{"role": "user"' + "\n" + good)
    with pytest.raises(BadInput, match=r"line 3 is not a messages row.*nothing was imported"):
        import_dataset(db, path, fmt="messages", license="CC-BY-4.0")
    assert list_imports(db) == [] and db.one("SELECT COUNT(*) FROM imported_rows")[0] == 0
    sri = tmp_path / "sri.jsonl"
    sri.write_text(json.dumps({"code": "x = 1\n", "search": "y = 2\n", "replace": "y = 3\n"}) + "\n")
    assert main(["datasets", "import", str(sri), "--format", "sri", "--license", "MIT"]) == 2
    err = capsys.readouterr().err
    assert "line 1" in err and "'search' does not occur in 'code'" in err and "Traceback" not in err
    assert main(["datasets", "import", str(path), "--format", "nope", "--license", "MIT"]) == 2


# ----------------------------------------------------------------------------- the CLI end to end


def test_plan_curate_list_show_through_the_cli(home: Home, db: Database, capsys) -> None:
    w = World(db)
    rng = random.Random(9)
    w.repo("alpha", 30)
    write_catalog(home.root, {"alpha": "fail-fast"})
    w.triples("alpha", [{"i": i, "prompt": text(rng), "answer": text(rng, 30)} for i in range(30)])
    w.triples("alpha", [{"i": i, "stage": "scope", "prompt": text(rng), "answer": f"src/m{i}.py"} for i in range(30)])
    for i in range(10):
        w.run("alpha", i, status="failed", attempts=[{"apply_status": "apply_error", "kind": "apply_error",
                                                      "apply_error": "block 1 (x): SEARCH not found"}])
    assert main(["train-plan", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["slots"][0]["slot"] == "execute-code"
    assert main(["curate-data", "--plan", str(plan["id"]), "--slot", "execute-code", "--cutoff", "2021-06-01",
                 "--json"]) == 0
    [built] = json.loads(capsys.readouterr().out)
    assert built["slot"] == "execute-code" and built["rows_train"] + built["rows_valid"] == 30
    assert main(["curate-data", "--plan", str(plan["id"]), "--cutoff", "2021-06-01"]) == 0
    out = capsys.readouterr()
    assert "unchanged" in out.out and "scope sft" in out.out
    assert main(["datasets", "list"]) == 0
    assert "datasets" in capsys.readouterr().out
    assert main(["datasets", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["datasets"]
    assert [(d["slot"], d["kind"]) for d in listed] == [("execute-code", "sft"), ("scope", "sft")]
    assert main(["datasets", "show", str(built["id"])]) == 0
    shown = capsys.readouterr().out
    assert "funnel" in shown and "exact duplicates" in shown and "near duplicates" in shown and "+ replay" in shown
    assert main(["datasets", "show", "99"]) == 2
    assert main(["curate-data", "--plan", "1"]) == 2  # no cutoff anywhere
    assert "needs a cutoff" in capsys.readouterr().err
    assert main(["curate-data", "--plan", "1", "--cutoff", "2021-06-01", "--replay", "0.5"]) == 2


# ----------------------------------------------------------------------------- trl


@pytest.mark.slow
def test_the_exports_load_with_datasets_and_train_5_steps_with_trl(world: World, home: Home, tmp_path: Path) -> None:
    pytest.importorskip("trl")
    pytest.importorskip("datasets")
    from tinymodel import tiny_model

    model_dir = tiny_model().hf_dir
    rng = random.Random(10)
    short = [" ".join(rng.choices(WORDS[:50], k=8)) for _ in range(24)]
    world.triples("alpha", [{"i": i, "prompt": short[i], "answer": short[i + 1]} for i in range(12)])
    world.triples("alpha", [{"i": i, "kind": "dpo", "stage": "plan", "prompt": short[i], "chosen": short[i + 2],
                             "rejected": short[i + 3], "meta": {"margin": 0.5}} for i in range(12)])
    sft = curate(world.db, home).dataset
    dpo = curate(world.db, home, slot="plan", kind="dpo").dataset

    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    def files(ds) -> dict[str, str]:
        folder = home.root / ds.path
        return {"train": str(folder / "train.jsonl"), "validation": str(folder / "valid.jsonl")}

    sft_data = load_dataset("json", data_files=files(sft))
    assert sft_data["train"].num_rows == sft.rows_train and sft_data["validation"].num_rows == sft.rows_valid
    first = sft_data["train"][0]
    assert first["prompt"][0]["role"] == "user" and first["completion"][0]["role"] == "assistant"
    assert first["source"] == "gold" and first["repo"] == "alpha" and first["triple_id"]
    tok = AutoTokenizer.from_pretrained(model_dir)
    common = {"max_steps": 5, "per_device_train_batch_size": 2, "learning_rate": 1e-3, "report_to": [],
              "logging_steps": 1, "save_strategy": "no", "use_cpu": True, "seed": 0}
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    trainer = SFTTrainer(model=model, args=SFTConfig(output_dir=str(tmp_path / "sft"), **common),
                         train_dataset=sft_data["train"], processing_class=tok)
    result = trainer.train()
    assert result.global_step == 5 and np.isfinite(result.training_loss)

    dpo_data = load_dataset("json", data_files=files(dpo))
    assert {"prompt", "chosen", "rejected", "source", "content_hash"} <= set(dpo_data["train"].column_names)
    trainer = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(model_dir),
                         args=DPOConfig(output_dir=str(tmp_path / "dpo"), **common),
                         train_dataset=dpo_data["train"], processing_class=tok)
    result = trainer.train()
    assert result.global_step == 5 and np.isfinite(result.training_loss)


def test_the_frozen_regression_set_is_never_curated_nor_replayed(db: Database, home: Home) -> None:
    """Issue 14: the evaluation's frozen tasks are checked on every evaluation, so no dataset
    may train on them, whatever its cutoff; one curated before they were chosen is not replayed."""
    from appliance.db.evaluation import TaskRef, set_frozen

    w = World(db)
    rng = random.Random(9)
    shas = w.repo("alpha", 40)
    w.triples("alpha", [{"i": i, "prompt": text(rng), "answer": text(rng, 40)} for i in range(30)])
    first = curate(db, home, cutoff_ts=BASE_TS + 20 * DAY).dataset  # before any frozen set
    assert {r.sha for r in dataset_rows(db, first.id)} >= {shas[3], shas[7]}
    set_frozen(db, [TaskRef(BASE_TS + i * DAY, "alpha", shas[i]) for i in (3, 7, 25)], chosen_by=None)
    second = curate(db, home).dataset
    assert funnel(second)["the frozen regression set"] == 3
    assert second.counts["replay"]["the frozen regression set"] == 2  # 3 and 7, from the first dataset
    rows = dataset_rows(db, second.id)
    assert rows and not {r.sha for r in rows} & {shas[3], shas[7], shas[25]}
