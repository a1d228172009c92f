"""The orchestrator role's parts that need no network: history, progress, evaluation."""

from pathlib import Path
from typing import Any

import pytest
import torch

from node.orchestration import Phase, RunState
from node.run_control.evaluator import evaluate_checkpoints
from node.run_control.history import Assignment, RunHistory
from node.run_control.progress import run_progress, total_work, window_summary
from store import Store, StoreConfig
from training.data import build_dataset
from training.engine import StageEngine
from training.evaluate import EvalConfig, chained_loss_fn, evaluate
from training.run_spec import RunSpec
from training.stages import build_stages


@pytest.fixture
def store(tmp_path: Path):
    with Store.open(tmp_path / "store", StoreConfig(sync=False, map_size_mib=64)) as opened:
        yield opened


def test_spec_is_pinned_and_a_changed_spec_is_refused(store: Store) -> None:
    history = RunHistory(store, "run-a")
    spec = RunSpec(model="tiny", n_stages=2).to_record()
    assert history.pin_spec(spec) == spec
    assert history.pin_spec(dict(spec)) == spec  # a restart with the same spec
    with pytest.raises(ValueError, match=r"differs in \['lr'\]"):
        history.pin_spec({**spec, "lr": 0.5})
    assert RunHistory(store, "run-b").pin_spec({**spec, "lr": 0.5})["lr"] == 0.5


def test_windows_losses_weights_and_assignments_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "store"
    with Store.open(path, StoreConfig(sync=False, map_size_mib=64)) as store:
        history = RunHistory(store, "r")
        history.add_losses(0, {0: 4.0, 1: 3.0})
        history.add_losses(0, {2: 2.0})
        history.close_window(0, tokens=96, seconds=2.0, weights={"0": "a0", "1": "b0"})
        history.add_losses(1, {0: 1.0})
        history.close_window(1, tokens=32, seconds=1.0, weights={"1": "b1"})
        history.set_assignment("peer", Assignment(1, "b1"))
        history.set_assignment("gone", Assignment(0, "a0"))
        history.set_assignment("gone", None)
    with Store.open(path, StoreConfig(sync=False, map_size_mib=64)) as store:
        history = RunHistory(store, "r")
        assert history.latest_weights() == {0: "a0", 1: "b1"}
        assert history.assignment("peer") == Assignment(1, "b1")
        assert history.assignment("gone") is None
        first, second = (window_summary(r) for r in history.windows())
        assert (first["loss"], first["tokens_per_s"]) == (3.0, 48.0)
        assert (second["window"], second["loss"], second["eval"]) == (1, 1.0, {})


def test_compaction_keeps_the_summary_and_passes_over_a_window_never_closed(
    store: Store,
) -> None:
    history = RunHistory(store, "r")
    members = {"p0": [0, "a"], "p1": [0, "a"], "p2": [1, "b"]}
    for w in range(6):
        history.add_losses(w, {0: 2.0})
        if w != 2:  # window 2 never closed
            fields = {"versions": {"0": "v", "1": "v"}, "members": members, "premerge": {"p0": "x"}}
            history.close_window(w, tokens=8, seconds=1.0, work={"p0": {}}, **fields)
    summaries = [window_summary(r) for r in history.windows()]
    assert history.compact(4, max_windows=2) == 2  # windows 0 and 1
    assert history.compact(4) == 1  # 2 passed over, 3 compacted
    assert history.compact(4) == 0
    records = history.windows()
    assert [("members" in r, "premerge" in r) for r in records] == [(False, False)] * 4 + [
        (True, True)
    ] * 2
    assert [window_summary(r) for r in records] == summaries  # what /status shows is unchanged
    assert records[0]["merged"] == {"0": 2, "1": 1} and records[2].get("closed") is None


def test_forgotten_windows_leave_the_run_totals_and_starting_points_unchanged(
    store: Store,
) -> None:
    history = RunHistory(store, "r")
    for w in range(7):
        history.add_losses(w, {0: 2.0})
        if w != 1:  # window 1 never closed
            work = {"p0": {"forward": 2, "backward": 1}, f"q{w}": {"forward": 1}}
            weights = {"0": f"a{w}", "1": f"b{w}"}
            history.close_window(w, tokens=8, seconds=1.5, completed=4, work=work, weights=weights)
    state = RunState(run_id="r", n_stages=2, window=7, phase=Phase.TRAIN)

    def figures() -> tuple[dict[str, Any], Any, Any]:
        closed = [r for r in history.windows() if r.get("closed")]
        earlier = history.earlier()
        args: dict[str, Any] = {"tokens_per_batch": 2, "accumulate": 2, "earlier": earlier}
        progress = run_progress(state, closed, [], **args)
        return progress, total_work(closed, {}, earlier["work"]), history.starting_points()

    before = figures()
    assert history.forget(5, max_windows=3) == 3  # windows 0, 1 and 2
    assert history.forget(5) == 2
    assert history.forget(5) == 0
    assert [r["window"] for r in history.windows()] == [5, 6]
    assert history.earlier()["windows"] == 4  # the never-closed window 1 counts nothing
    progress, work, starts = figures()
    assert (progress["batches"], progress["seconds"]) == (before[0]["batches"], 9.0)
    assert work == before[1] and work["p0"] == {"forward": 12, "backward": 6}
    assert starts == before[2] and starts[0] == {0: "a6", 1: "b6"}


def test_progress_counts_steps_tokens_and_the_last_group_loss() -> None:
    closed = [{"window": 0, "completed": 8, "seconds": 4.0, "loss": 5.0}]
    state = RunState(
        run_id="r",
        n_stages=2,
        window=1,
        phase=Phase.TRAIN,
        batches_total=8,
        issued=4,
        completed=4,
        window_started_at=100.0,
    )
    progress = run_progress(
        state, closed, [9.0, 3.0, 1.0], tokens_per_batch=10, accumulate=2, now=102.0
    )
    assert progress == {
        "step": 6,
        "batches": 12,
        "tokens": 120,
        "seconds": 6.0,
        "tokens_per_s": 20.0,
        "loss": 2.0,
    }
    fresh = run_progress(state, closed, [], tokens_per_batch=10, accumulate=2, now=102.0)
    assert fresh["loss"] == 5.0
    work = total_work(
        [{"work": {"a": {"forward": 2, "backward": 2}}}], {"a": {"forward": 1, "backward": 0}}
    )
    assert work == {"a": {"forward": 3, "backward": 2}}


def test_evaluation_of_stage_checkpoints_equals_the_chained_model(tmp_path: Path) -> None:
    spec = RunSpec(
        model="tiny",
        n_stages=2,
        vocab_size=512,
        batch_size=2,
        seq_len=32,
        batches_per_window=4,
        accumulate=2,
        code_max_bytes=250_000,
        prose_max_bytes=120_000,
        math_documents=150,
    )
    dataset = build_dataset(spec.data_config(tmp_path / "data"))
    stages = build_stages(spec.model_config(), spec.n_stages, seed=3)
    checkpoints = {}
    for index, stage in enumerate(stages):
        StageEngine(stage, spec.engine_config(device="cpu")).save(tmp_path / f"s{index}.st")
        checkpoints[index] = (tmp_path / f"s{index}.st").read_bytes()
    got = evaluate_checkpoints(spec, dataset, checkpoints, max_batches=2)
    with torch.no_grad():
        want = evaluate(
            chained_loss_fn(stages), dataset, EvalConfig(batch_size=2, seq_len=32, max_batches=2)
        )
    assert set(got) == {"code", "math", "prose"}
    for domain, result in want.items():
        assert got[domain]["loss"] == pytest.approx(result.loss, rel=1e-6)
        assert got[domain]["perplexity"] == pytest.approx(result.perplexity, rel=1e-6)
    with pytest.raises(ValueError, match="one checkpoint per stage"):
        evaluate_checkpoints(spec, dataset, {0: checkpoints[0]}, max_batches=1)
