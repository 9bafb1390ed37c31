"""The RL loop against a real server: KL against a reference, resume after a crash, off-policy
sampling, on the built-in tiny model (a few steps each: behaviour, not learning)."""

import asyncio
import itertools
import json

import numpy as np
import pytest
from tinker import types

from rl.datums import loss_input, trajectory_datums
from rl.envs.arithmetic import AdditionDataset, PlainFormat
from rl.kl import apply_kl_penalty
from rl.rollouts import run_groups
from rl.train import RLConfig, train
from sdk_helpers import TINY

PARAMS = types.SamplingParams(max_tokens=4, temperature=1.0)


@pytest.fixture(scope="module")
def problem_format(tokenizer):
    return PlainFormat(tokenizer)


def _sampled_datums(sampler, problem_format, seed: int) -> list[types.Datum]:
    dataset = AdditionDataset(problem_format, groups=4, group_size=4, max_operand=3, seed=seed)
    groups = asyncio.run(run_groups(sampler, dataset.get_batch(0), PARAMS))
    # advantage 0 everywhere: only the KL penalty shapes them
    return [d for g in groups for t in g.trajectories for d in trajectory_datums(t, 0.0)]


def test_kl_is_zero_against_itself_positive_after_training_and_its_gradient_pulls_back(service_client, problem_format):
    policy = service_client.create_lora_training_client(base_model=TINY, rank=8, seed=3).result()
    reference = service_client.create_sampling_client(base_model=TINY).result()
    # a fresh LoRA (B = 0) is the base model: the KL to it is zero, and nothing is shaped
    datums = _sampled_datums(policy.save_weights_and_get_sampling_client().result(), problem_format, seed=1)
    shaped, metrics = asyncio.run(apply_kl_penalty(datums, reference, coef=1.0))
    assert abs(metrics["kl"]) < 1e-4
    for d in shaped:
        np.testing.assert_allclose(loss_input(d, "advantages"), 0.0, atol=1e-4)
    # SFT pulls the policy away from the base model: sampled tokens are now likelier under it
    data = [problem_format.sft_datum(a, b) for a, b in itertools.product(range(4), repeat=2)]
    for _ in range(10):
        policy.forward_backward(data, "cross_entropy")
        policy.optim_step(types.AdamParams(learning_rate=3e-3)).result()
    datums = _sampled_datums(policy.save_weights_and_get_sampling_client().result(), problem_format, seed=2)
    shaped, before = asyncio.run(apply_kl_penalty(datums, reference, coef=1.0))
    assert before["kl"] > 0.05
    # steps on the KL-shaped advantages alone bring the policy back toward the reference
    for _ in range(3):
        policy.forward_backward(shaped, "importance_sampling")
        policy.optim_step(types.AdamParams(learning_rate=3e-3)).result()
    forward = policy.forward(datums, "cross_entropy").result()
    now = [np.asarray(o["logprobs"].data) for o in forward.loss_fn_outputs]
    refs = asyncio.run(_reference_logprobs(reference, datums))
    kl_after = sum(float(((lp - ref) * loss_input(d, "mask")).sum()) for lp, ref, d in zip(now, refs, datums)) / sum(
        float(loss_input(d, "mask").sum()) for d in datums
    )
    assert kl_after < before["kl"] * 0.8, (kl_after, before["kl"])


def test_kl_against_a_sampler_checkpoint_is_zero_for_the_same_weights(service_client, problem_format, tmp_path):
    policy = service_client.create_lora_training_client(base_model=TINY, rank=8, seed=4).result()
    data = [problem_format.sft_datum(a, b) for a, b in itertools.product(range(4), repeat=2)]
    for _ in range(5):
        policy.forward_backward(data, "cross_entropy")
        policy.optim_step(types.AdamParams(learning_rate=3e-3)).result()
    saved = policy.save_weights_for_sampler("kl-reference").result()
    datums = _sampled_datums(policy.save_weights_and_get_sampling_client().result(), problem_format, seed=3)
    own = service_client.create_sampling_client(model_path=saved.path).result()
    base = service_client.create_sampling_client(base_model=TINY).result()
    _, against_own = asyncio.run(apply_kl_penalty(datums, own, coef=1.0))
    _, against_base = asyncio.run(apply_kl_penalty(datums, base, coef=1.0))
    assert abs(against_own["kl"]) < 1e-3 < against_base["kl"]
    # the loop takes the same reference from the config, and logs the KL it measured
    dataset = AdditionDataset(problem_format, groups=2, group_size=4, max_operand=3)
    config = RLConfig(base_model=TINY, log_dir=tmp_path / "run", steps=1, learning_rate=1e-4, max_tokens=4,
                      kl_coef=0.1, kl_reference_path=saved.path)
    asyncio.run(train(config, dataset, service_client))
    row = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert row["kl"] > 0.05  # a fresh adapter (the base model) against the trained reference


async def _reference_logprobs(reference, datums):
    from rl.kl import reference_logprobs

    return await asyncio.gather(*(reference_logprobs(reference, d) for d in datums))


class _CrashAt:
    """The dataset of a run that dies when step `crash_step` asks for its batch."""

    def __init__(self, dataset, crash_step: int | None):
        self.dataset, self.crash_step = dataset, crash_step

    def __len__(self):
        return len(self.dataset)

    def get_batch(self, index):
        if index == self.crash_step:
            raise RuntimeError("killed")
        return self.dataset.get_batch(index)


def _config(tmp_path, **overrides) -> RLConfig:
    values = dict(base_model=TINY, log_dir=tmp_path / "run", steps=5, learning_rate=3e-3, lora_rank=8, max_tokens=4, save_every=1)
    values.update(overrides)
    return RLConfig(**values)


def test_a_run_killed_after_step_k_resumes_from_its_checkpoint(service_client, problem_format, tmp_path):
    dataset = AdditionDataset(problem_format, groups=2, group_size=4, max_operand=3)
    with pytest.raises(RuntimeError, match="killed"):
        asyncio.run(train(_config(tmp_path), _CrashAt(dataset, crash_step=3), service_client))
    log_dir = tmp_path / "run"
    checkpoints = [json.loads(line) for line in (log_dir / "checkpoints.jsonl").read_text().splitlines()]
    assert [c["step"] for c in checkpoints] == [0, 1, 2]
    asyncio.run(train(_config(tmp_path), dataset, service_client))
    steps = [json.loads(line)["step"] for line in (log_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 1, 2, 3, 4], "the step counter and the metrics continue where the run stopped"
    checkpoints = [json.loads(line) for line in (log_dir / "checkpoints.jsonl").read_text().splitlines()]
    assert [c["step"] for c in checkpoints] == [0, 1, 2, 3, 4]
    assert (log_dir / "curves.png").stat().st_size > 0


def test_off_policy_sampling_runs_ahead_and_reports_its_staleness(service_client, problem_format, tmp_path):
    dataset = AdditionDataset(problem_format, groups=2, group_size=4, max_operand=3)
    config = _config(tmp_path, steps=6, max_steps_off_policy=2, save_every=0)
    asyncio.run(train(config, dataset, service_client))
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    staleness = [row["staleness"] for row in rows]
    assert len(rows) == 6 and all(0 <= s <= 2 for s in staleness)
    assert max(staleness) >= 1, f"sampling never ran ahead of training: {staleness}"
