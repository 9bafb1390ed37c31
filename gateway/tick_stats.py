"""What one press tick did: how much work it pressed together, how long that work had waited, and
how long the trainer took."""

from dataclasses import dataclass, field

from trainer.commands import ForwardBackward


@dataclass(frozen=True)
class TickStats:
    rounds: int = 0  # rounds that ran something (a batch, barriers, or both)
    batches: int = 0  # forward_backward calls to the trainer pool
    rows: int = 0  # datums in those batches
    tokens: int = 0  # model-input tokens of those datums
    adapters: int = 0  # distinct models with work in those batches
    barriers: int = 0  # commands run alone (optim_step, save, load, create, unload)
    failed: int = 0  # operations whose future failed, pre-failed ones included
    # per operation: from its submission until the press took it (the start of the tick for work
    # already queued when the tick began)
    queue_wait_s: tuple[float, ...] = ()
    compute_s: float = 0.0  # time spent inside the trainer pool

    @property
    def ops(self) -> int:
        """Operations finished (resolved or failed): each one waited once."""
        return len(self.queue_wait_s)


@dataclass
class TickTally:
    """A tick's figures while it runs."""

    rounds: int = 0
    batches: int = 0
    rows: int = 0
    tokens: int = 0
    models: set[str] = field(default_factory=set)
    barriers: int = 0
    failed: int = 0
    queue_wait_s: list[float] = field(default_factory=list)
    compute_s: float = 0.0

    def add_batch(self, commands: list[ForwardBackward], compute_s: float) -> None:
        self.batches += 1
        self.rows += sum(len(c.work.data) for c in commands)
        self.tokens += sum(len(d.tokens) for c in commands for d in c.work.data)
        self.models.update(c.model_id for c in commands)
        self.compute_s += compute_s

    def add_barrier(self, compute_s: float) -> None:
        self.barriers += 1
        self.compute_s += compute_s

    def stats(self) -> TickStats:
        return TickStats(
            rounds=self.rounds, batches=self.batches, rows=self.rows, tokens=self.tokens,
            adapters=len(self.models), barriers=self.barriers, failed=self.failed,
            queue_wait_s=tuple(self.queue_wait_s), compute_s=self.compute_s,
        )
