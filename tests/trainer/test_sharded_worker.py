"""A trainer worker sharded with FSDP2 over two processes (gloo on this CPU) answers as the same
worker in one process does: the same logprobs, losses, gradient norms and trained LoRA weights,
its ranks' replicas equal, each rank holding half of the decoder layers' weights."""

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sharded_script import MODELS, run

from anvil.base_models import BaseModelRegistry
from anvil.tiny_qwen3 import TINY_QWEN3_NAME
from trainer.commands import CommandFailure
from trainer.pool import InProcessTrainerPool
from trainer.sharding import rendezvous_address
from trainer.worker import TrainerWorker

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
SEEDED = [m for m, spec in MODELS.items() if spec.seed is not None]


@pytest.fixture(scope="module")
def answers(tmp_path_factory) -> tuple[dict, list[dict]]:
    """(the unsharded worker's answers, each rank's answers)."""
    data_dir = tmp_path_factory.mktemp("sharded")
    registry = BaseModelRegistry(data_dir / "models")
    registry.resolve(TINY_QWEN3_NAME)  # built once, before the ranks read it
    whole = run(InProcessTrainerPool(TrainerWorker(registry, "fp32")), tmp_path_factory.mktemp("whole"))
    init_method = rendezvous_address("127.0.0.1")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests" / "trainer")]), "OMP_NUM_THREADS": "1"}
    outs = [data_dir / f"rank{rank}.pkl" for rank in range(2)]
    ranks = [
        subprocess.Popen([sys.executable, str(ROOT / "tests/trainer/sharded_script.py"), str(rank), "2", init_method,
                          str(data_dir), str(outs[rank])], env=env)
        for rank in range(2)
    ]
    for process in ranks:
        assert process.wait(timeout=600) == 0
    return whole, [pickle.loads(out.read_bytes()) for out in outs]


def _close(a, b, where: str) -> None:
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=where)


def test_every_answer_equals_the_unsharded_workers(answers):
    whole, ranks = answers
    for sharded in ranks:
        for r, (expected, got) in enumerate(zip(whole["rounds"], sharded["rounds"], strict=True)):
            assert len(got) == len(expected)
            for i, (e, g) in enumerate(zip(expected, got, strict=True)):
                assert not isinstance(g, CommandFailure), g
                for e_lp, g_lp in zip(e.logprobs, g.logprobs, strict=True):
                    _close(g_lp, e_lp, f"round {r} request {i} logprobs")
                assert g.metrics.keys() == e.metrics.keys()
                for name in e.metrics:
                    _close(g.metrics[name], e.metrics[name], f"round {r} request {i} {name}")
        for r, (expected, got) in enumerate(zip(whole["steps"], sharded["steps"], strict=True)):
            for model_id in expected.keys() & set(SEEDED):
                _close(got[model_id].metrics["grad_norm:mean"], expected[model_id].metrics["grad_norm:mean"],
                       f"step {r} {model_id} grad norm")
        for model_id in SEEDED:
            for path, (a, b) in whole["weights"][model_id].items():
                got_a, got_b = sharded["weights"][model_id][path]
                _close(got_a, a, f"{model_id} {path} lora_A")
                _close(got_b, b, f"{model_id} {path} lora_B")


def test_the_replicas_stay_equal(answers):
    _, (rank0, rank1) = answers
    assert rank0["weights"].keys() == rank1["weights"].keys() == {*MODELS, "copy"}
    for model_id, layers in rank0["weights"].items():
        for path, (a, b) in layers.items():
            assert torch.equal(a, rank1["weights"][model_id][path][0]), (model_id, path)
            assert torch.equal(b, rank1["weights"][model_id][path][1]), (model_id, path)
    # the unseeded model trained too: its replicas started from rank 0's seed
    assert any(b.abs().sum() > 0 for _, b in rank0["weights"]["unseeded"].values())


def test_each_rank_holds_half_the_decoder_layers(answers):
    _, ranks = answers
    for sharded in ranks:
        elements = sharded["layer_elements"]
        assert elements["local"] * 2 == pytest.approx(elements["whole"], rel=0.01)


def test_a_failing_share_fails_the_batch_on_every_rank_and_the_worker_goes_on(answers):
    whole, ranks = answers
    for sharded in ranks:
        failures = sharded["bad_round"]
        assert all(isinstance(f, CommandFailure) and f.category == "user" for f in failures), failures
        assert all("unknown loss 'no_such_loss'" in f.message for f in failures)
        _close(sharded["after_bad"][0].logprobs[0], whole["after_bad"][0].logprobs[0], "forward after the failure")


def test_checkpoints_are_written_once_and_restore_on_every_rank(answers):
    _, (rank0, rank1) = answers
    assert rank0["saved"] == rank1["saved"] and Path(rank0["saved"].folder).is_dir()
    assert rank0["sampler"] == rank1["sampler"] and (Path(rank0["sampler"].folder) / "adapter_model.safetensors").is_file()
    for sharded in (rank0, rank1):
        copy, original = sharded["copy_round"]
        np.testing.assert_array_equal(copy.logprobs[0], original.logprobs[0])
