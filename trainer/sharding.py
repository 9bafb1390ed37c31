"""One trainer worker spread over several processes, its base model sharded with torch FSDP2.

For a base model that does not fit one device. Every process of the group (a rank) runs a whole
`TrainerWorker` on the same commands, in the same order:
- the base model's decoder layers are sharded with FSDP2 (`fully_shard`): a rank keeps 1/N of
  their weights and all-gathers a layer's weights just before the layer runs (in the forward
  pass and again in the backward pass). The embedding, the final norm and the lm_head stay whole
  on every rank, since the chunked logprob kernel reads the lm_head weight directly; in an 8B
  Qwen3 they are about 15% of the weights.
- LoRA adapters and their AdamW state are small next to the base model and replicated: every
  rank applies the same update to the same summed gradients, so the replicas never drift.
- a forward_backward round's requests are dealt out to the ranks (data parallel; one request is
  never split, since a loss's metrics need all of its data), gradients are summed across ranks at
  optim_step, and every rank gets every request's result.

Collectives must be entered by every rank in the same order. So each rank runs exactly one
forward pass (and, under autograd, one backward pass through every layer) per micro-batch, even
when its share of that micro-batch is empty; and a failure in one rank's local work is shared
(`agree`) before the next collective, so every rank raises it and none waits forever.
"""

import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.fsdp import fully_shard

from anvil.device import distributed_backend, pick_device
from anvil.errors import UserError, failure_of

T = TypeVar("T")

# how long a rank waits in a collective for the others (a rank stuck that long is broken)
COLLECTIVE_TIMEOUT = timedelta(minutes=30)


class ShardFailure(Exception):
    """Another rank's local work failed; every rank raises this with that rank's words."""


@dataclass
class ShardGroup:
    rank: int
    size: int
    mesh: DeviceMesh

    @classmethod
    def join(cls, init_method: str, rank: int, size: int) -> "ShardGroup":
        """Join the group's process group (`init_method`: tcp://HOST:PORT of rank 0's rendezvous);
        blocks until all `size` ranks have joined."""
        if not 0 <= rank < size:
            raise ValueError(f"rank {rank} is outside a group of {size}")
        dist.init_process_group(
            distributed_backend(), init_method=init_method, rank=rank, world_size=size, timeout=COLLECTIVE_TIMEOUT
        )
        return cls(rank, size, init_device_mesh(pick_device()[0].type, (size,)))

    def leave(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()

    def shard(self, model: nn.Module) -> None:
        """Shard the decoder layers of a Hugging Face causal LM over the group."""
        body = getattr(model, "model", None)
        layers = getattr(body, "layers", None)
        if not isinstance(layers, nn.ModuleList):
            raise ValueError(f"{type(model).__name__} has no model.layers to shard")
        for layer in layers:
            fully_shard(layer, mesh=self.mesh, reshard_after_forward=True)
        # The decoder body is the root: its forward gathers each layer in turn (and prefetches
        # the next). The embedding stays whole (it is also the tied lm_head of small models), and
        # a root resharding after forward keeps the norm's weights from staying gathered.
        embedding = set(body.get_input_embeddings().parameters())
        fully_shard(body, mesh=self.mesh, reshard_after_forward=True, ignored_params=embedding)

    def share(self, sizes: list[int]) -> list[int]:
        """Which of the items of these sizes (tokens) this rank runs: the largest first, each to
        the rank with the fewest tokens so far. Every rank computes the same deal."""
        load = [0] * self.size
        mine = []
        for i in sorted(range(len(sizes)), key=lambda i: (-sizes[i], i)):
            rank = min(range(self.size), key=lambda r: (load[r], r))
            load[rank] += sizes[i]
            if rank == self.rank:
                mine.append(i)
        return sorted(mine)

    def all_gather(self, obj: T) -> list[T]:
        gathered: list = [None] * self.size
        dist.all_gather_object(gathered, obj)
        return gathered

    def agree(self, error: BaseException | None) -> None:
        """Raise on every rank if any rank's local work failed (the lowest such rank's failure)."""
        failures = self.all_gather(None if error is None else failure_of(error))
        for rank, failure in enumerate(failures):
            if failure is None:
                continue
            if rank == self.rank and error is not None:
                raise error
            raise _failure_from(rank, failure)

    def on_rank0(self, fn: Callable[[], T]) -> T:
        """Run `fn` on rank 0 alone (a checkpoint write); every rank returns its result or raises
        its failure."""
        result, error = None, None
        if self.rank == 0:
            try:
                result = fn()
            except Exception as exc:  # deliberate: the failure is shared with the other ranks
                error = exc
        result, failure = self.broadcast((result, None if error is None else failure_of(error)))
        if error is not None:
            raise error
        if failure is not None:
            raise _failure_from(0, failure)
        return result  # type: ignore[return-value]

    def sum_gradients(self, params: list[nn.Parameter]) -> None:
        """Sum each parameter's gradient over the ranks, in place; a parameter no rank has a
        gradient for keeps none (an optimizer skips it, where a zero gradient would still decay
        it)."""
        has = torch.tensor([p.grad is not None for p in params], dtype=torch.int32, device=_device(params))
        dist.all_reduce(has)
        summed = [p for p, n in zip(params, has.tolist(), strict=True) if n > 0]
        if not summed:
            return
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in summed])
        dist.all_reduce(flat)
        offset = 0
        for p in summed:
            p.grad = flat[offset : offset + p.numel()].view_as(p).clone()
            offset += p.numel()

    def broadcast(self, obj: T) -> T:
        """Rank 0's `obj` on every rank."""
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def _failure_from(rank: int, failure: tuple[str, str]) -> Exception:
    category, message = failure
    return UserError(message) if category == "user" else ShardFailure(f"on rank {rank}: {message}")


def _device(params: list[nn.Parameter]) -> torch.device:
    return params[0].device if params else pick_device()[0]


def rendezvous_address(host: str) -> str:
    """An init_method for `ShardGroup.join` on a free port of this machine (rank 0's)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("", 0))
        port = probe.getsockname()[1]
    return f"tcp://{host}:{port}"
