"""The trainer: base models loaded once, many LoRA adapters on each, one pass per batch.

`forward_backward` takes the queued forward/forward_backward work of many models at once (the
press hands it a tick's worth) and runs it as mixed-adapter micro-batches over each base model.
Losses are sums, so splitting a tick into micro-batches and accumulating gradients is exact.
"""

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from anvil.base_models import BaseModelRegistry
from anvil.types import AdamStep, ForwardBackwardResult, ForwardBackwardWork, LoraSpec, TrainDatum
from losses.registry import get_loss
from losses.types import LossSpec
from trainer import checkpoints
from trainer.adapter import Adapter, random_seed
from trainer.model_host import BaseModelHost, Row
from trainer.sharding import ShardGroup

# padded tokens per micro-batch; one request's data always stays in one micro-batch
MAX_MICROBATCH_TOKENS = 16_384


@dataclass
class TrainedModel:
    base_model: str
    host: BaseModelHost
    adapter: Adapter


class TrainerWorker:
    def __init__(self, registry: BaseModelRegistry, precision: str | None = None, shards: ShardGroup | None = None):
        self.registry = registry
        # None: the process-wide choice (anvil.device)
        self.precision = precision
        # None: this process is the whole worker; else one rank of a group that shards the base
        # models (trainer/sharding.py) and runs every command in lockstep with the other ranks
        self.shards = shards
        self.hosts: dict[str, BaseModelHost] = {}
        self.models: dict[str, TrainedModel] = {}

    def host(self, base_model: str) -> BaseModelHost:
        if base_model not in self.hosts:
            path = self.registry.resolve(base_model)
            self.hosts[base_model] = BaseModelHost(base_model, path, self.precision, self.shards)
        return self.hosts[base_model]

    def create_model(self, model_id: str, base_model: str, spec: LoraSpec) -> None:
        if self.shards is not None and spec.seed is None:
            # the replicas of an adapter must start equal: rank 0 draws the seed for all
            spec = dataclasses.replace(spec, seed=self.shards.broadcast(random_seed()))
        host = self.host(base_model)
        adapter = Adapter(model_id, spec, host.layers, dtype=torch.float32)
        adapter.attach()
        self.models[model_id] = TrainedModel(base_model, host, adapter)

    def create_model_from_state(self, model_id: str, folder: Path, with_optimizer: bool) -> None:
        base_model, spec = checkpoints.read_training_meta(folder)
        self.create_model(model_id, base_model, spec)
        checkpoints.load_training_state(self.models[model_id].adapter, folder, with_optimizer)

    def remove_model(self, model_id: str) -> None:
        model = self.models.pop(model_id, None)
        if model is not None:
            model.adapter.detach()

    def forward_backward(self, items: list[tuple[str, ForwardBackwardWork]]) -> list[ForwardBackwardResult]:
        results: list[ForwardBackwardResult | None] = [None] * len(items)
        for batch in _microbatches(items, self.models):
            outputs = self._run_microbatch([(model_id, work) for _, model_id, work in batch])
            for (index, _, _), output in zip(batch, outputs, strict=True):
                results[index] = output
        return results  # type: ignore[return-value]

    def optim_step(self, model_id: str, step: AdamStep) -> dict[str, float]:
        adapter = self.models[model_id].adapter
        if self.shards is not None:  # each rank holds the gradients of its share of the requests
            self.shards.sum_gradients(adapter.parameters())
        return adapter.optim_step(step)

    def save_state(self, model_id: str, target: Path) -> Path:
        model = self.models[model_id]
        return self._write(lambda: checkpoints.save_training_state(model.adapter, model.base_model, target))

    def load_state(self, model_id: str, folder: Path, with_optimizer: bool) -> None:
        checkpoints.load_training_state(self.models[model_id].adapter, folder, with_optimizer)

    def save_sampler_weights(self, model_id: str, target: Path) -> Path:
        model = self.models[model_id]
        return self._write(lambda: checkpoints.save_sampler_weights(model.adapter, model.base_model, target))

    def _write(self, write: Callable[[], Path]) -> Path:
        # the replicas of a sharded worker are equal: rank 0 writes for all of them
        return write() if self.shards is None else self.shards.on_rank0(write)

    def _run_microbatch(self, items: list[tuple[str, ForwardBackwardWork]]) -> list[ForwardBackwardResult]:
        host = self.models[items[0][0]].host
        needs_grad = any(not work.forward_only for _, work in items)
        if self.shards is None:
            return self._run_rows(items, host, needs_grad)
        # every rank runs its share of the micro-batch, then every rank learns every result
        mine = self.shards.share([sum(len(d.tokens) for d in work.data) for _, work in items])
        answers = dict(zip(mine, self._run_rows([items[i] for i in mine], host, needs_grad), strict=True))
        merged: dict[int, ForwardBackwardResult] = {}
        for share in self.shards.all_gather(answers):
            merged.update(share)
        return [merged[i] for i in range(len(items))]

    def _run_rows(
        self, items: list[tuple[str, ForwardBackwardWork]], host: BaseModelHost, needs_grad: bool
    ) -> list[ForwardBackwardResult]:
        """Run (a rank's share of) one micro-batch on `host`. A rank of a sharded worker whose
        share is empty still runs the passes the other ranks run."""
        # rows grouped by adapter, each adapter's rows contiguous, as the routing requires
        order = sorted(range(len(items)), key=lambda i: items[i][0])
        rows, owners = [], []
        for i in order:
            model_id, work = items[i]
            for datum in work.data:
                rows.append(Row(model_id, datum.tokens, datum.inputs["target_tokens"]))
                owners.append(i)
        if not rows:  # an empty share: one token served by the base model alone
            rows = [Row(None, np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64))]  # type: ignore[arg-type]
        with torch.set_grad_enabled(needs_grad):
            row_logprobs = host.logprobs(rows)
            results, total_loss, error = [], None, None
            try:
                per_item: dict[int, list[torch.Tensor]] = {i: [] for i in range(len(items))}
                for owner, lp in zip(owners, row_logprobs, strict=False):
                    per_item[owner].append(lp)
                for i, (_, work) in enumerate(items):
                    loss, metrics = _apply_loss(work, per_item[i], host.device)
                    results.append(
                        ForwardBackwardResult(
                            logprobs=[lp.detach().float().cpu().numpy() for lp in per_item[i]], metrics=metrics
                        )
                    )
                    if not work.forward_only:
                        total_loss = loss if total_loss is None else total_loss + loss
            except Exception as exc:  # deliberate: the other ranks must hear of it before backward
                error = exc
            if self.shards is not None:
                self.shards.agree(error)
                if needs_grad and total_loss is None:
                    total_loss = row_logprobs[0].sum() * 0.0  # the backward pass the others run too
            elif error is not None:
                raise error
            if total_loss is not None:
                total_loss.backward()
        return results


def _apply_loss(work: ForwardBackwardWork, lps: list[torch.Tensor], device: torch.device) -> tuple[torch.Tensor, dict[str, float]]:
    spec = get_loss(work.loss_fn)
    lp = torch.cat(lps, dim=0)
    inputs = {name: _loss_input(spec, name, work, device) for name in _declared_inputs(spec)}
    result = spec.compute(lp, inputs, work.loss_config)
    metrics = {"loss:sum": float(result.loss.detach())}
    metrics.update(result.metrics)
    return result.loss, metrics


def _declared_inputs(spec: LossSpec) -> tuple[str, ...]:
    return (*spec.required_inputs, *spec.optional_inputs, *spec.per_token_config)


def _loss_input(spec: LossSpec, name: str, work: ForwardBackwardWork, device: torch.device) -> torch.Tensor:
    if name in spec.optional_inputs:
        fill = spec.optional_inputs[name]
    else:
        fill = work.loss_config.get(name, 0.0)
    arrays = [_input_or_fill(datum, name, fill) for datum in work.data]
    return torch.from_numpy(np.concatenate(arrays, axis=0)).to(device)


def _input_or_fill(datum: TrainDatum, name: str, fill: float) -> np.ndarray:
    if name in datum.inputs:
        return datum.inputs[name].astype(np.float32, copy=False)
    return np.full(datum.inputs["target_tokens"].shape, fill, dtype=np.float32)


def _microbatches(items, models):
    """Split (model_id, work) items into micro-batches of one base model and a bounded token count,
    never splitting one request; yields lists of (index, model_id, work).

    Forward-only work runs in micro-batches of its own, without autograd: inside a backward pass
    its adapters would receive zero gradients, which an optimizer step does not ignore. Reordering
    is safe because nothing in one tick's batch changes the weights.
    """
    groups: dict[tuple[int, bool], list] = {}
    for index, (model_id, work) in enumerate(items):
        groups.setdefault((id(models[model_id].host), work.forward_only), []).append((index, model_id, work))
    for group in groups.values():
        batch, rows, longest = [], 0, 0
        for entry in group:
            work = entry[2]
            n_rows = len(work.data)
            n_long = max(len(d.tokens) for d in work.data)
            if batch and (rows + n_rows) * max(longest, n_long) > MAX_MICROBATCH_TOKENS:
                yield batch
                batch, rows, longest = [], 0, 0
            batch.append(entry)
            rows, longest = rows + n_rows, max(longest, n_long)
        if batch:
            yield batch
