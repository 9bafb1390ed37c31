"""The trainer: base models loaded once, many LoRA adapters on each, one pass per batch.

`forward_backward` takes the queued forward/forward_backward work of many models at once (the
press hands it a tick's worth) and runs it as mixed-adapter micro-batches over each base model.
Losses are sums, so splitting a tick into micro-batches and accumulating gradients is exact.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from anvil.base_models import BaseModelRegistry
from anvil.types import AdamStep, ForwardBackwardResult, ForwardBackwardWork, LoraSpec, TrainDatum
from losses.registry import get_loss
from losses.types import LossSpec
from trainer import checkpoints
from trainer.adapter import Adapter
from trainer.model_host import BaseModelHost, Row

# padded tokens per micro-batch; one request's data always stays in one micro-batch
MAX_MICROBATCH_TOKENS = 16_384


@dataclass
class TrainedModel:
    base_model: str
    host: BaseModelHost
    adapter: Adapter


class TrainerWorker:
    def __init__(self, registry: BaseModelRegistry, precision: str | None = None):
        self.registry = registry
        # None: the process-wide choice (anvil.device)
        self.precision = precision
        self.hosts: dict[str, BaseModelHost] = {}
        self.models: dict[str, TrainedModel] = {}

    def host(self, base_model: str) -> BaseModelHost:
        if base_model not in self.hosts:
            self.hosts[base_model] = BaseModelHost(base_model, self.registry.resolve(base_model), self.precision)
        return self.hosts[base_model]

    def create_model(self, model_id: str, base_model: str, spec: LoraSpec) -> None:
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
        return self.models[model_id].adapter.optim_step(step)

    def save_state(self, model_id: str, target: Path) -> Path:
        model = self.models[model_id]
        return checkpoints.save_training_state(model.adapter, model.base_model, target)

    def load_state(self, model_id: str, folder: Path, with_optimizer: bool) -> None:
        checkpoints.load_training_state(self.models[model_id].adapter, folder, with_optimizer)

    def save_sampler_weights(self, model_id: str, target: Path) -> Path:
        model = self.models[model_id]
        return checkpoints.save_sampler_weights(model.adapter, model.base_model, target)

    def _run_microbatch(self, items: list[tuple[str, ForwardBackwardWork]]) -> list[ForwardBackwardResult]:
        host = self.models[items[0][0]].host
        # rows grouped by adapter, each adapter's rows contiguous, as the routing requires
        order = sorted(range(len(items)), key=lambda i: items[i][0])
        rows, owners = [], []
        for i in order:
            model_id, work = items[i]
            for datum in work.data:
                rows.append(Row(model_id, datum.tokens, datum.inputs["target_tokens"]))
                owners.append(i)
        needs_grad = any(not work.forward_only for _, work in items)
        with torch.set_grad_enabled(needs_grad):
            row_logprobs = host.logprobs(rows)
            per_item: dict[int, list[torch.Tensor]] = {i: [] for i in range(len(items))}
            for owner, lp in zip(owners, row_logprobs, strict=True):
                per_item[owner].append(lp)
            results, total_loss = [], None
            for i, (_, work) in enumerate(items):
                loss, metrics = _apply_loss(work, per_item[i], host.device)
                results.append(
                    ForwardBackwardResult(
                        logprobs=[lp.detach().float().cpu().numpy() for lp in per_item[i]], metrics=metrics
                    )
                )
                if not work.forward_only:
                    total_loss = loss if total_loss is None else total_loss + loss
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
