"""One trainer worker on a Ray cluster: a single actor, or several that shard its base models.

A worker of one shard is one `TrainerActor`. A worker of N shards is N actors, ranks 0..N-1 of one
torch process group (trainer/sharding.py: FSDP2 over the decoder layers, gloo on CPUs, NCCL on
GPUs, each rank reserving its own `--trainer-gpus`); every command goes to every rank, and rank
0's answer is the worker's. The ranks of a group live and die together: when one dies the
others are killed too, Ray restarts them all, and they form a new process group
(`RayTrainerWorker.recover`), since a collective with a dead peer can never finish.
"""

import logging
import os
import time
from dataclasses import dataclass

import ray
from ray.exceptions import ActorUnavailableError, RayActorError

from anvil.base_models import BaseModelRegistry
from anvil.ray_cluster import actor_options
from trainer.commands import BarrierCommand, CommandFailure, ForwardBackward
from trainer.pool import InProcessTrainerPool
from trainer.sharding import ShardGroup, rendezvous_address
from trainer.worker import TrainerWorker

log = logging.getLogger(__name__)

# seconds a command may wait for its worker (a restarting one included) before it fails
ACTOR_TIMEOUT_S = 3600.0
# seconds the other ranks of a sharded worker get to answer once one rank has failed
RANK_STRAGGLE_S = 120.0
# seconds Ray gets to bring a dead actor back before its models are reported lost
RESTART_WAIT_S = 300.0


class TrainerActor:
    """The process of one trainer worker, or of one rank of a sharded one (a Ray actor).

    A restarted actor holds no models; until the pool has rebuilt them (`acknowledge_restart`)
    it answers every command with `ActorRestarted`, so a restart that no command saw happen is
    noticed all the same, before any command runs against a model that is not there."""

    def __init__(self, registry: BaseModelRegistry, precision: str | None, rank: int = 0, shards: int = 1):
        self.pool = InProcessTrainerPool(TrainerWorker(registry, precision))
        self.rank, self.shards = rank, shards
        self.restarted = ray.get_runtime_context().was_current_actor_reconstructed

    def forward_backward(self, commands: list[ForwardBackward]) -> list:
        return ActorRestarted() if self.restarted else self.pool.forward_backward(commands)

    def run(self, command: BarrierCommand):
        return ActorRestarted() if self.restarted else self.pool.run(command)

    def acknowledge_restart(self) -> None:
        self.restarted = False

    def rendezvous(self) -> str:
        """Where the ranks of a sharded worker meet (rank 0's node, a free port)."""
        return rendezvous_address(ray.util.get_node_ip_address())

    def join(self, init_method: str) -> None:
        """Join the worker's process group; returns once every rank has joined."""
        self.pool.worker.shards = ShardGroup.join(init_method, self.rank, self.shards)

    def pid(self) -> int:
        return os.getpid()


@dataclass(frozen=True)
class ActorRestarted:
    """The answer of a restarted actor whose models were not rebuilt yet."""


class WorkerDied(Exception):
    pass


class RayTrainerWorker:
    def __init__(self, name: str, registry: BaseModelRegistry, precision: str | None, gpus: float, shards: int):
        self.name = name
        remote = ray.remote(TrainerActor).options(**actor_options(gpus))
        self.ranks = [remote.remote(registry, precision, rank, shards) for rank in range(shards)]
        if shards > 1:
            self._join()

    def submit(self, method: str, *args) -> list:
        """Send one call to every rank; `answer` waits for it."""
        return [getattr(rank, method).remote(*args) for rank in self.ranks]

    def answer(self, refs: list):
        """Rank 0's answer to a call; WorkerDied as soon as any rank died or restarted meanwhile
        (the other ranks' answers are then never waited for: they may be stuck in a collective
        with the dead rank).

        The ranks of a sharded worker fail alike (trainer/sharding.py shares a failure before the
        next collective). A rank that failed alone broke the lockstep: the others may wait in a
        collective it never entered, so they get RANK_STRAGGLE_S to answer, and answers that
        disagree count as the worker's death (its ranks are restarted and its models restored)."""
        pending, answers = list(refs), {}
        deadline = time.monotonic() + ACTOR_TIMEOUT_S
        while pending:
            done, pending = ray.wait(pending, num_returns=1, timeout=max(0.0, deadline - time.monotonic()))
            if not done:
                if answers:
                    raise WorkerDied(f"{_failure_of(answers) or 'a rank answered'}, and ranks "
                                     f"{sorted(set(range(len(refs))) - set(answers))} did not within {RANK_STRAGGLE_S:.0f} s")
                raise WorkerDied(f"no answer within {ACTOR_TIMEOUT_S:.0f} s")
            ref = done[0]
            try:
                answer = ray.get(ref)
            except RayActorError as exc:
                raise WorkerDied(first_line(exc)) from None
            if isinstance(answer, ActorRestarted):
                raise WorkerDied("it was restarted since its last command")
            answers[refs.index(ref)] = answer
            if _failed(answer):
                deadline = min(deadline, time.monotonic() + RANK_STRAGGLE_S)
        if len({_failed(a) for a in answers.values()}) > 1:
            raise WorkerDied(f"its ranks disagreed ({_failure_of(answers)})")
        return answers[0]

    def call(self, method: str, *args):
        return self.answer(self.submit(method, *args))

    def recover(self) -> None:
        """After a death: every rank restarted and, when sharded, joined in a new process group.
        Raises RayActorError when Ray will not bring a rank back."""
        if len(self.ranks) > 1:
            for rank in self.ranks:  # the survivors hold a process group with a dead peer
                ray.kill(rank, no_restart=False)
        deadline = time.monotonic() + RESTART_WAIT_S
        for rank in self.ranks:
            while True:
                try:
                    ray.get(rank.acknowledge_restart.remote(), timeout=RESTART_WAIT_S)
                    break
                except ActorUnavailableError:  # still restarting
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
        if len(self.ranks) > 1:
            self._join()

    def pids(self) -> dict[str, int]:
        if len(self.ranks) == 1:
            return {self.name: _pid(self.ranks[0])}
        return {f"{self.name}/rank{r}": _pid(rank) for r, rank in enumerate(self.ranks)}

    def kill(self) -> None:
        for rank in self.ranks:
            ray.kill(rank, no_restart=True)

    def _join(self) -> None:
        init_method = ray.get(self.ranks[0].rendezvous.remote(), timeout=RESTART_WAIT_S)
        ray.get([rank.join.remote(init_method) for rank in self.ranks], timeout=RESTART_WAIT_S)
        log.info("trainer worker %s: %d actors shard its base models (FSDP2), process group at %s",
                 self.name, len(self.ranks), init_method)


def _failed(answer) -> bool:
    items = answer if isinstance(answer, list) else [answer]
    return any(isinstance(item, CommandFailure) for item in items)


def _failure_of(answers: dict[int, object]) -> str | None:
    """The first failure among the ranks' answers, named by rank."""
    for rank, answer in sorted(answers.items()):
        for item in answer if isinstance(answer, list) else [answer]:
            if isinstance(item, CommandFailure):
                return f"rank {rank}: {item.message}"
    return None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _pid(actor, attempts: int = 20) -> int:
    """An actor's process id. Just after a restart Ray may still answer a call with "the actor was
    restarted" (ActorUnavailableError, a passing state): asking again is safe, the call has no
    effect."""
    for _ in range(attempts - 1):
        try:
            return ray.get(actor.pid.remote(), timeout=60)
        except ActorUnavailableError:
            time.sleep(0.5)
    return ray.get(actor.pid.remote(), timeout=60)
