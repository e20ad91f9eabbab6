"""The chronological holdout and its refusals, on a real repo's history stored as tasks."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from eval_world import World, add_dataset, build_world

from appliance.config import EvaluationConfig, Home
from appliance.db import evaluation as sql
from appliance.db.core import Database
from appliance.db.triples import save_triples
from appliance.errors import HoldoutTooSmall, LeakError
from appliance.evaluation.holdout import check_size, choose_frozen, select_holdout
from harness.triples import gold_examples


@pytest.fixture
def world(tmp_path: Path, home: Home, db: Database) -> World:
    return build_world(tmp_path, home, db, n=12)


def _config(**kw) -> EvaluationConfig:
    return EvaluationConfig(**{"min_holdout": 4, "frozen_size": 2, **kw})


def test_the_holdout_is_every_task_from_the_training_cutoff_on(world: World) -> None:
    ds = add_dataset(world.db, world.tasks[:7], cutoff_ts=world.cutoff_before(7))
    holdout, new = select_holdout(world.db, _config(), datasets=[ds])
    assert holdout.cutoff_ts == world.tasks[7].author_ts
    assert holdout.tasks == world.tasks[7:] and len(holdout.tasks) == 5
    assert new and len(holdout.frozen) == 2 and set(holdout.frozen) <= set(holdout.tasks)
    assert holdout.rows_checked == 7
    # 5 tasks only see large differences; the configured 0.1 would need 197.
    assert holdout.needed == 197 and holdout.detectable == pytest.approx(0.63, abs=0.01)
    assert "would need 197" in holdout.notes[0]
    # A later cutoff holds out less; a cutoff that is earlier than the training data's is refused.
    later, _ = select_holdout(world.db, _config(), datasets=[ds], cutoff_ts=world.cutoff_before(8))
    assert later.tasks == world.tasks[8:]
    with pytest.raises(LeakError, match="before dataset .*'s cutoff") as info:
        select_holdout(world.db, _config(), datasets=[ds], cutoff_ts=world.cutoff_before(5))
    assert "use --cutoff" in str(info.value)


def test_no_cutoff_at_all_is_refused(world: World) -> None:
    with pytest.raises(LeakError, match="nothing says where the holdout starts"):
        select_holdout(world.db, _config(), datasets=[])
    holdout, _ = select_holdout(world.db, _config(), datasets=[], cutoff_ts=world.cutoff_before(6))
    assert len(holdout.tasks) == 6


def test_a_too_small_holdout_is_refused_saying_what_the_effect_needs(world: World) -> None:
    ds = add_dataset(world.db, world.tasks[:10], cutoff_ts=world.cutoff_before(10))
    with pytest.raises(HoldoutTooSmall) as info:
        select_holdout(world.db, _config(min_holdout=3), datasets=[ds])
    message = str(info.value)
    assert "2 tasks, fewer than [evaluation] min_holdout = 3" in message and "would need about 197" in message
    assert "lower min_holdout" in message
    assert check_size(3, _config(min_holdout=3, effect=0.5))[0] == 8


def test_a_training_row_from_a_held_out_task_is_refused(world: World) -> None:
    # The dataset claims a cutoff before task 7 but carries a row of task 9: a broken curation.
    leaky = add_dataset(world.db, [*world.tasks[:7], world.tasks[9]], cutoff_ts=world.cutoff_before(7))
    with pytest.raises(LeakError) as info:
        select_holdout(world.db, _config(), datasets=[leaky])
    assert f"is from held-out task geo@{world.tasks[9].sha[:10]}" in str(info.value)
    assert "training row train:7 of dataset" in str(info.value)


def test_a_training_row_with_a_held_out_task_content_is_refused(world: World) -> None:
    # The same example reached training another way (an imported row): caught by content hash.
    t = world.tasks[8]
    ex = gold_examples(world.home.repo_dir("geo"), repo="geo", sha=t.sha, parent=t.parent, instruction="Add it",
                       author_ts=t.author_ts)
    save_triples(world.db, ex.triples)
    leaky = add_dataset(world.db, world.tasks[:7], cutoff_ts=world.cutoff_before(7),
                        extra_hashes=(ex.triples[0].content_hash,))
    with pytest.raises(LeakError, match=rf"\(an imported row\) has the content of a triple of held-out task geo@{t.sha[:10]}"):
        select_holdout(world.db, _config(), datasets=[leaky])
    clean = add_dataset(world.db, world.tasks[:7], cutoff_ts=world.cutoff_before(7),
                        extra_hashes=(hashlib.sha256(b"unrelated").hexdigest(),))
    holdout, _ = select_holdout(world.db, _config(), datasets=[clean])
    assert holdout.rows_checked == 8


def test_the_frozen_set_is_chosen_once_and_trained_on_never(world: World) -> None:
    ds = add_dataset(world.db, world.tasks[:6], cutoff_ts=world.cutoff_before(6))
    holdout, new = select_holdout(world.db, _config(frozen_size=3), datasets=[ds])
    assert new and len(holdout.frozen) == 3
    # Spread over the holdout's time: one from each third.
    thirds = [world.tasks[6:8], world.tasks[8:10], world.tasks[10:12]]
    assert all(f in third for f, third in zip(sorted(holdout.frozen), thirds, strict=True))
    sql.set_frozen(world.db, holdout.frozen, chosen_by=None)
    again, new = choose_frozen(world.db, world.tasks[9:], _config(frozen_size=3))
    assert not new and again == sorted(holdout.frozen)
    # A later dataset that trains on a frozen task is refused, whatever its cutoff says.
    frozen = min(holdout.frozen)
    later = add_dataset(world.db, [t for t in world.tasks if t.author_ts <= frozen.author_ts],
                        cutoff_ts=frozen.author_ts + 1)
    with pytest.raises(LeakError, match=f"held-out task geo@{frozen.sha[:10]}"):
        select_holdout(world.db, _config(frozen_size=3), datasets=[later])
