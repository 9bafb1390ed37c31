"""The Ray trainer pool: each base model on its own actor, answers equal to the in-process pool's,
a trainer worker sharded over two actors (FSDP2) answering as one process does, and a killed
actor's models restored from their last save (or reported lost), never silently wrong."""

import numpy as np
import pytest
from model_folders import build_4x_folder

from anvil.base_models import BaseModelRegistry
from anvil.placement import GroupPlacement, Placement
from anvil.types import (
    AdamStep,
    ForwardBackwardResult,
    ForwardBackwardWork,
    LoraSpec,
    TrainDatum,
)
from trainer.commands import (
    CommandFailure,
    CreateModel,
    CreateModelFromState,
    CreateResult,
    ForwardBackward,
    OptimStep,
    SaveState,
)
from trainer.pool import InProcessTrainerPool
from trainer.worker import TrainerWorker

ray = pytest.importorskip("ray", reason="the ray extra is not installed (scripts/setup.sh installs it)")

TINY = "anvil/tiny-qwen3"
OTHER = "test/qwen3-4x"
STEP = AdamStep(learning_rate=1e-2)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_runtime():
    from anvil.ray_cluster import ClusterSettings, connect, shutdown

    connect(ClusterSettings())
    yield
    shutdown()


@pytest.fixture(scope="module")
def two_models(tmp_path_factory) -> BaseModelRegistry:
    folder = build_4x_folder(tmp_path_factory.mktemp("other-model") / "qwen3-4x")
    return BaseModelRegistry(tmp_path_factory.mktemp("models"), {OTHER: folder})


def _fb(model_id: str, shift: int = 0, forward_only: bool = False) -> ForwardBackward:
    tokens = np.arange(10 + shift, 22 + shift, dtype=np.int64)
    datum = TrainDatum(tokens[:-1], {"target_tokens": tokens[1:], "weights": np.ones(11, np.float32)})
    return ForwardBackward(model_id, ForwardBackwardWork([datum], "cross_entropy", {}, forward_only))


def _logprobs(pool, model_id: str) -> np.ndarray:
    (result,) = pool.forward_backward([_fb(model_id, forward_only=True)])
    assert isinstance(result, ForwardBackwardResult), result
    return result.logprobs[0]


def _train(pool, model_ids: list[str], steps: int) -> list[list[float]]:
    """`steps` mixed forward_backward batches over every model, each followed by its optim_steps."""
    losses = []
    for step in range(steps):
        results = pool.forward_backward([_fb(m, shift=step + i) for i, m in enumerate(model_ids)])
        assert all(isinstance(r, ForwardBackwardResult) for r in results), results
        losses.append([r.metrics["loss:sum"] for r in results])
        for m in model_ids:
            assert not isinstance(pool.run(OptimStep(m, STEP)), CommandFailure)
    return losses


def test_two_base_models_run_on_their_own_actors_and_match_the_in_process_pool(ray_runtime, two_models):
    from trainer.ray_pool import RayTrainerPool

    placement = Placement(base_models={TINY: GroupPlacement(), OTHER: GroupPlacement()})
    pool = RayTrainerPool(two_models, placement)
    local = InProcessTrainerPool(TrainerWorker(two_models))
    try:
        models = {"a": TINY, "b": OTHER, "c": TINY}
        for model_id, base in models.items():
            create = CreateModel(model_id, base, LoraSpec(rank=4, seed=len(model_id) + ord(model_id)))
            assert pool.run(create) == local.run(create) == CreateResult(model_id)
        assert pool.actor_of("a") == pool.actor_of("c") != pool.actor_of("b")
        pids = pool.actor_pids()
        assert len(set(pids.values())) == 2, pids

        # one batch mixing both actors comes back in the order it was sent, equal to in-process
        assert _train(pool, list(models), 3) == _train(local, list(models), 3)
        for model_id in models:
            np.testing.assert_array_equal(_logprobs(pool, model_id), _logprobs(local, model_id))
    finally:
        pool.close()


def test_a_killed_actor_restores_its_models_from_their_last_save(ray_runtime, two_models, tmp_path):
    from trainer.ray_pool import RayTrainerPool

    pool = RayTrainerPool(two_models, Placement())
    local = InProcessTrainerPool(TrainerWorker(two_models))
    try:
        for p in (pool, local):
            p.run(CreateModel("saved", TINY, LoraSpec(rank=4, seed=1)))
            p.run(CreateModel("clean", TINY, LoraSpec(rank=4, seed=2)))
            p.run(CreateModel("unsaved", TINY, LoraSpec(rank=4, seed=3)))
            _train(p, ["saved", "clean", "unsaved"], 2)
            p.run(SaveState("saved", str(tmp_path / f"{id(p)}-saved")))
            p.run(SaveState("clean", str(tmp_path / f"{id(p)}-clean")))
        saved_logprobs = _logprobs(local, "saved")
        _train(pool, ["saved"], 1)  # a step after the save: it is lost with the actor
        pid = pool.actor_pids()["trainer:default#0"]
        ray.kill(pool._workers[0].ranks[0], no_restart=False)

        # restored exactly (unchanged since its save): the command is retried and answers as before
        (clean,) = pool.forward_backward([_fb("clean", forward_only=True)])
        assert isinstance(clean, ForwardBackwardResult), clean
        np.testing.assert_array_equal(clean.logprobs[0], _logprobs(local, "clean"))
        assert pool.actor_pids()["trainer:default#0"] != pid, "Ray restarted the actor"

        # restored from an older save: its next command is refused, saying so; then it trains on from the save
        refused = pool.run(OptimStep("saved", STEP))
        assert isinstance(refused, CommandFailure) and refused.category == "server"
        assert "restored from its last saved state" in refused.message and "steps since that save were lost" in refused.message
        assert "send it again" in refused.message
        np.testing.assert_array_equal(_logprobs(pool, "saved"), saved_logprobs)

        # never saved: lost, with what to do about it
        (lost,) = pool.forward_backward([_fb("unsaved")])
        assert isinstance(lost, CommandFailure) and "never saved" in lost.message
        assert "create it again from a checkpoint" in lost.message
        assert pool.run(CreateModelFromState("unsaved", str(tmp_path / f"{id(local)}-saved" / "v000001"), True)) == CreateResult("unsaved")
        np.testing.assert_array_equal(_logprobs(pool, "unsaved"), saved_logprobs)
    finally:
        pool.close()


def test_a_worker_sharded_over_two_actors_matches_the_in_process_pool_and_survives_a_rank_death(
    ray_runtime, two_models, tmp_path
):
    from trainer.ray_pool import RayTrainerPool

    placement = Placement(base_models={TINY: GroupPlacement(shards=2), OTHER: GroupPlacement()})
    pool = RayTrainerPool(two_models, placement)
    local = InProcessTrainerPool(TrainerWorker(two_models))
    try:
        models = {"a": TINY, "b": OTHER, "c": TINY}
        for model_id, base in models.items():
            create = CreateModel(model_id, base, LoraSpec(rank=4, seed=ord(model_id)))
            assert pool.run(create) == local.run(create) == CreateResult(model_id)
        pids = pool.actor_pids()
        assert set(pids) == {"trainer:anvil/tiny-qwen3#0/rank0", "trainer:anvil/tiny-qwen3#0/rank1", "trainer:test/qwen3-4x#0"}
        assert len(set(pids.values())) == 3, pids

        # the sharded worker's answers equal the single process's (sums in another order: to rounding)
        np.testing.assert_allclose(_train(pool, list(models), 3), _train(local, list(models), 3), rtol=1e-5)
        for model_id in models:
            np.testing.assert_allclose(_logprobs(pool, model_id), _logprobs(local, model_id), rtol=1e-5, atol=1e-5)

        # rank 1 dies: both ranks restart and form a new group; the saved model is restored exactly
        for p in (pool, local):
            assert not isinstance(p.run(SaveState("a", str(tmp_path / f"{id(p)}-a"))), CommandFailure)
        ray.kill(pool._workers[0].ranks[1], no_restart=False)
        (a,) = pool.forward_backward([_fb("a", forward_only=True)])
        assert isinstance(a, ForwardBackwardResult), a
        np.testing.assert_allclose(a.logprobs[0], _logprobs(local, "a"), rtol=1e-5, atol=1e-5)
        after = pool.actor_pids()
        assert after["trainer:anvil/tiny-qwen3#0/rank0"] != pids["trainer:anvil/tiny-qwen3#0/rank0"]
        assert after["trainer:anvil/tiny-qwen3#0/rank1"] != pids["trainer:anvil/tiny-qwen3#0/rank1"]
        assert after["trainer:test/qwen3-4x#0"] == pids["trainer:test/qwen3-4x#0"], "the other worker was not touched"

        # the never-saved model of the sharded worker is lost; the other worker's model trains on
        (c,) = pool.forward_backward([_fb("c")])
        assert isinstance(c, CommandFailure) and "never saved" in c.message
        np.testing.assert_allclose(_train(pool, ["a", "b"], 1), _train(local, ["a", "b"], 1), rtol=1e-5)
    finally:
        pool.close()


def test_ranks_that_fail_alone_or_disagree_count_as_the_workers_death(ray_runtime, monkeypatch):
    """The lockstep guard of a sharded worker (trainer/ray_worker.py), on stand-in ranks."""
    from trainer import ray_worker
    from trainer.ray_worker import RayTrainerWorker, WorkerDied

    @ray.remote(num_cpus=0)
    class Rank:
        def __init__(self, answer, delay_s: float):
            self.answer, self.delay_s = answer, delay_s

        def run(self, _command):
            import time

            time.sleep(self.delay_s)
            return self.answer

    def worker(*ranks) -> RayTrainerWorker:
        stand_in = object.__new__(RayTrainerWorker)
        stand_in.name, stand_in.ranks = "trainer:test#0", [Rank.remote(*rank) for rank in ranks]
        return stand_in

    failure = CommandFailure("server", "out of memory")
    monkeypatch.setattr(ray_worker, "RANK_STRAGGLE_S", 2.0)
    assert worker(("ok", 0), ("ok", 0.5)).call("run", None) == "ok"
    assert worker((failure, 0), (failure, 0.5)).call("run", None) == failure, "failing alike is an answer"
    with pytest.raises(WorkerDied, match=r"rank 1: out of memory, and ranks \[0\] did not within 2 s"):
        worker(("ok", 30), (failure, 0)).call("run", None)
    with pytest.raises(WorkerDied, match="its ranks disagreed \\(rank 0: out of memory\\)"):
        worker(([failure], 0), (["ok"], 0.5)).call("run", None)
