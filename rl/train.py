"""The RL training loop: sample groups, score them, turn them into datums, take a step.

Each step samples every group of its batch through the SDK with the newest sampler weights,
computes group-relative advantages (dropping groups whose rewards are all equal), optionally
shapes them with a KL penalty against a reference model, and submits forward_backward and
optim_step back to back before awaiting either (the server runs them in one press tick). Then
it saves the weights for the next step's sampling, evaluates and checkpoints on schedule, and
logs one line of metrics.

With `max_steps_off_policy = k > 0` sampling runs ahead of training: the next batches are
sampled with the weights at hand while the current one trains, so the trainer never waits for
rollouts; a batch sampled more than k steps before the step that trains on it is sampled again.
The importance-sampling family of losses corrects for the gap through the sampler logprobs each
datum carries; the staleness each step trained at is logged.

A run resumes from its log folder: started again with the same folder, it loads the last training
checkpoint (weights and optimizer state) and continues at the step after it, its metrics file
continuing too.
"""

import asyncio
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tinker
from tinker import types

from rl.advantages import group_advantages, is_constant
from rl.datums import loss_input, trajectory_datums, with_inputs
from rl.kl import apply_kl_penalty
from rl.metric_keys import ENTROPY, LOSS, REWARD, STEP_TIME_S, TOKENS_PER_S
from rl.rollouts import run_groups
from rl.run_state import last_checkpoint, record_checkpoint
from rl.tracking import Tracker
from rl.types import Dataset, TrajectoryGroup


@dataclass
class RLConfig:
    base_model: str
    log_dir: Path
    steps: int
    learning_rate: float
    # "constant", or "linear": decays to 0 at the last step, which keeps a sharp late policy
    # from being knocked over by full-size steps (off-policy runs in particular)
    lr_schedule: str = "constant"
    # the rate rises linearly over the first steps: Adam's first updates are full-size whatever
    # the gradient (its moment estimates start empty), which knocks a warm-started policy back
    lr_warmup_steps: int = 0
    lora_rank: int = 32
    loss_fn: str = "importance_sampling"
    loss_fn_config: dict[str, float] | None = None
    max_tokens: int = 64
    temperature: float = 1.0
    # A_t -= kl_coef · (q_t − ref_t). 0 turns the penalty off
    kl_coef: float = 0.0
    # the reference: a sampler checkpoint (`tinker://…/sampler_weights/…`, an SFT warm-up say);
    # None is the base model
    kl_reference_path: str | None = None
    # the KL against the reference is measured (and logged as `kl`) even when kl_coef is 0
    report_kl: bool = False
    max_steps_off_policy: int = 0
    drop_constant_groups: bool = True
    eval_every: int = 0  # 0: never
    save_every: int = 0  # 0: only at the end
    seed: int = 0
    wandb_project: str | None = None
    wandb_run_name: str | None = None
    # start from this training checkpoint (an SFT warm-up, say) instead of a fresh adapter
    init_state_path: str | None = None


@dataclass
class _Policy:
    """The newest sampler weights and the step count they include."""

    sampler: tinker.SamplingClient
    version: int


async def train(
    config: RLConfig,
    dataset: Dataset,
    service: tinker.ServiceClient,
    eval_dataset: Dataset | None = None,
) -> Path:
    """Run (or resume) the loop; returns the log folder, where config.json, metrics.jsonl,
    checkpoints.jsonl, curves.png and the W&B run folder are."""
    config.log_dir.mkdir(parents=True, exist_ok=True)
    resumed = last_checkpoint(config.log_dir)
    tracker = Tracker(
        config.log_dir, _config_dict(config), wandb_project=config.wandb_project,
        wandb_run_name=config.wandb_run_name, total_steps=config.steps,
    )
    if resumed is not None:
        training = await service.create_training_client_from_state_with_optimizer(resumed.state_path)
        start = resumed.step + 1
        tracker.truncate_after(resumed.step)
        print(f"resuming {config.log_dir} from step {resumed.step} ({resumed.state_path})")
    elif config.init_state_path is not None:
        training = await service.create_training_client_from_state(config.init_state_path)
        start = 0
    else:
        training = await service.create_lora_training_client(
            base_model=config.base_model, rank=config.lora_rank, seed=config.seed
        )
        start = 0
    reference = None
    if config.kl_coef > 0 or config.report_kl:
        if config.kl_reference_path is not None:
            reference = await service.create_sampling_client(model_path=config.kl_reference_path)
        else:
            reference = await service.create_sampling_client(base_model=config.base_model)
    params = types.SamplingParams(max_tokens=config.max_tokens, temperature=config.temperature)
    policy = _Policy(await training.save_weights_and_get_sampling_client(), start)
    batches = _Batches(dataset, params, config.max_steps_off_policy, start, config.steps, config.seed)
    batches.start(policy)
    failed = True
    try:
        for step in range(start, config.steps):
            started = time.perf_counter()
            groups = await batches.take(step, policy)
            metrics = await _train_step(training, config, groups, reference, learning_rate(config, step))
            policy = _Policy(await training.save_weights_and_get_sampling_client(), step + 1)
            batches.update(policy)
            metrics["staleness"] = float(np.mean([step - g.sampled_at_step for g in groups]))
            if eval_dataset is not None and config.eval_every and (step + 1) % config.eval_every == 0:
                metrics.update(await evaluate(policy.sampler, eval_dataset, params, seed=config.seed))
            if (config.save_every and (step + 1) % config.save_every == 0) or step + 1 == config.steps:
                saved = await training.save_state(f"rl-step-{step:06d}")
                record_checkpoint(config.log_dir, step, saved.path)
            metrics[STEP_TIME_S] = time.perf_counter() - started
            metrics[TOKENS_PER_S] = metrics.pop("_tokens") / metrics[STEP_TIME_S]
            tracker.log(step, metrics)
        failed = False
    finally:
        await batches.stop()
        tracker.close(exit_code=1 if failed else 0)
    return config.log_dir


async def evaluate(
    sampler: tinker.SamplingClient, dataset: Dataset, params: types.SamplingParams, seed: int | None = None
) -> dict[str, float]:
    """Mean reward and env metrics over the first batch of `dataset`, prefixed `eval/`."""
    groups = await run_groups(sampler, dataset.get_batch(0), params, seed=seed)
    trajectories = [t for g in groups for t in g.trajectories]
    metrics = {f"eval/{REWARD}": float(np.mean([t.total_reward for t in trajectories]))}
    for key, value in _mean_env_metrics(trajectories).items():
        metrics[f"eval/{key}"] = value
    return metrics


def learning_rate(config: RLConfig, step: int) -> float:
    warmup = min(1.0, (step + 1) / config.lr_warmup_steps) if config.lr_warmup_steps > 0 else 1.0
    if config.lr_schedule == "constant":
        return config.learning_rate * warmup
    if config.lr_schedule == "linear":
        return config.learning_rate * warmup * (1.0 - step / config.steps)
    raise ValueError(f"lr_schedule must be 'constant' or 'linear', got {config.lr_schedule!r}")


async def _train_step(
    training: tinker.TrainingClient, config: RLConfig, groups: list[TrajectoryGroup], reference, lr: float
) -> dict[str, float]:
    trajectories = [t for g in groups for t in g.trajectories]
    metrics: dict[str, float] = {REWARD: float(np.mean([t.total_reward for t in trajectories]))}
    metrics.update(_mean_env_metrics(trajectories))
    # a constant group's advantages are zero, but the KL penalty still shapes them: a policy that
    # is sure of a wrong answer (every sample wrong) is pulled back only through that group
    drop_constant = config.drop_constant_groups and config.kl_coef == 0
    kept = [g for g in groups if not (drop_constant and is_constant(g))]
    metrics["groups_kept"] = float(len(kept))
    datums = [
        datum
        for group in kept
        for trajectory, advantage in zip(group.trajectories, group_advantages(group.rewards), strict=True)
        for datum in trajectory_datums(trajectory, advantage)
    ]
    own_logprobs = np.concatenate([loss_input(d, "logprobs")[loss_input(d, "mask") > 0] for d in datums] or [np.zeros(0)])
    if own_logprobs.size:
        metrics[ENTROPY] = float(-own_logprobs.mean())  # per-token estimate along the sampled path
    if reference is not None and datums:
        shaped, kl_metrics = await apply_kl_penalty(datums, reference, config.kl_coef)
        metrics.update(kl_metrics)
        if config.kl_coef > 0:
            datums = shaped
    metrics["_tokens"] = float(sum(len(d.model_input.to_ints()) for d in datums))
    if not datums:  # every group constant: nothing to learn from this batch
        return metrics
    if config.loss_fn == "dro":
        datums = await _observation_logprobs_from_trainer(training, datums)
    # both submitted before either is awaited: the server runs them in one tick
    forward_backward = training.forward_backward(datums, config.loss_fn, loss_fn_config=config.loss_fn_config)
    optim_step = training.optim_step(types.AdamParams(learning_rate=lr))
    metrics["learning_rate"] = lr
    result = await forward_backward
    await optim_step
    # per token of the model's own, so steps of different sizes compare
    metrics[LOSS] = float(result.metrics["loss:sum"]) / max(1.0, float(own_logprobs.size))
    for key, value in result.metrics.items():
        if key != "loss:sum":
            metrics[f"train/{key}"] = float(value)
    return metrics


async def _observation_logprobs_from_trainer(training: tinker.TrainingClient, datums: list[types.Datum]) -> list[types.Datum]:
    """dro pulls every position's logprob toward the datum's `logprobs`, prompt positions
    included; there the trainer's own current logprobs stand in, so only the model's tokens move."""
    forward = await training.forward(datums, "cross_entropy")
    filled = []
    for datum, output in zip(datums, forward.loss_fn_outputs, strict=True):
        mask = loss_input(datum, "mask")
        current = np.asarray(output["logprobs"].data, dtype=np.float64)
        filled.append(with_inputs(datum, logprobs=np.where(mask > 0, loss_input(datum, "logprobs"), current)))
    return filled


def _mean_env_metrics(trajectories) -> dict[str, float]:
    keys = {k for t in trajectories for k in t.metrics()}
    return {k: float(np.mean([t.metrics()[k] for t in trajectories if k in t.metrics()])) for k in sorted(keys)}


def _config_dict(config: RLConfig) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(config).items()}


class _Batches:
    """The batches of each step, sampled in step order. On policy (k = 0) a batch is sampled when
    its step asks for it; off policy, a background task samples up to k batches ahead with the
    newest weights it has."""

    def __init__(self, dataset: Dataset, params: types.SamplingParams, max_off_policy: int, start: int, stop: int,
                 seed: int):
        self.dataset, self.params, self.max_off_policy, self.seed = dataset, params, max_off_policy, seed
        self.next_index, self.stop_index = start, stop
        # holds at most k + 1 batches: the sampler waits for the weights each batch needs
        self.queue: asyncio.Queue = asyncio.Queue()
        self.policy: _Policy | None = None
        self.task: asyncio.Task | None = None
        self.updated = asyncio.Condition()

    def start(self, policy: _Policy) -> None:
        self.policy = policy
        if self.max_off_policy > 0:
            self.task = asyncio.create_task(self._sample_ahead())

    def update(self, policy: _Policy) -> None:
        self.policy = policy
        if self.task is not None:
            asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self.updated:
            self.updated.notify_all()

    async def take(self, step: int, policy: _Policy) -> list[TrajectoryGroup]:
        if self.task is None:
            return await self._sample(step, policy)
        index, groups = await self.queue.get()
        assert index == step, (index, step)
        if step - min(g.sampled_at_step for g in groups) > self.max_off_policy:
            groups = await self._sample(step, policy)
        return groups

    async def _sample(self, index: int, policy: _Policy) -> list[TrajectoryGroup]:
        # the seed of batch `index` (and of the policy version), so a resumed run samples as the
        # uninterrupted one would
        seed = (self.seed * 1_000_003 + index * 10_007 + policy.version) % (1 << 62)
        return await run_groups(policy.sampler, self.dataset.get_batch(index), self.params, policy.version, seed=seed)

    async def _sample_ahead(self) -> None:
        for index in range(self.next_index, self.stop_index):
            # batch `index` trains at step `index`: sampled with the weights after step
            # index − k or later, it is at most k steps stale
            async with self.updated:
                await self.updated.wait_for(lambda: self.policy.version >= index - self.max_off_policy)
            await self.queue.put((index, await self._sample(index, self.policy)))

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
