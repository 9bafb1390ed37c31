"""The press: seq order per model, one batch per round across models, barriers between rounds,
failures kept to the futures they belong to, and what each tick reports."""

import asyncio
import json

import numpy as np
import pytest

from anvil.types import AdamStep, ForwardBackwardResult, ForwardBackwardWork, LoraSpec, TrainDatum
from gateway.errors import UserError
from gateway.futures import FutureStore, Payload
from gateway.press import SEQ_GAP_TIMEOUT_S, Press, TrainOp
from gateway.store import FutureResults, database_url, open_engine
from gateway.tick_stats import TickStats
from trainer.commands import (
    CommandFailure,
    CreateModel,
    CreateResult,
    ForwardBackward,
    LoadResult,
    LoadState,
    OptimStep,
    OptimStepResult,
)

BATCH_S, BARRIER_S = 0.5, 0.25
OWNER = "press-tests"


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class RecordingPool:
    """Stands in for the trainer pool: records the commands the press sends, in order, and answers
    with a canned result or failure. Each call takes BATCH_S or BARRIER_S on the fake clock."""

    def __init__(self, clock: FakeClock):
        self.clock = clock
        self.calls: list[tuple] = []
        self.failures: dict[tuple[type, str], CommandFailure] = {}  # (command type, model_id) → failure
        self.next_batch: CommandFailure | Exception | None = None
        self.during_next_batch = None  # called inside the next batch: work arriving mid-tick

    def forward_backward(self, commands):
        self.calls.append(("batch", tuple(sorted(c.model_id for c in commands))))
        self.clock.now += BATCH_S
        outcome, self.next_batch = self.next_batch, None
        if self.during_next_batch is not None:
            arrive, self.during_next_batch = self.during_next_batch, None
            arrive()
        if isinstance(outcome, Exception):
            raise outcome
        if outcome is not None:
            return [outcome] * len(commands)
        return [ForwardBackwardResult(logprobs=[], metrics={"loss:sum": 1.0}) for _ in commands]

    def run(self, command):
        self.calls.append((type(command).__name__, command.model_id))
        self.clock.now += BARRIER_S
        if (failure := self.failures.get((type(command), command.model_id))) is not None:
            return failure
        if isinstance(command, OptimStep):
            return OptimStepResult({"grad_norm": 0.5})
        if isinstance(command, LoadState):
            return LoadResult(command.model_id)
        return CreateResult(command.model_id)


@pytest.fixture
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture
def futures(loop, tmp_path):
    engine = open_engine(database_url(tmp_path))
    store = FutureStore(loop, FutureResults(engine))
    yield store
    store.close()
    engine.dispose()


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def pool(clock):
    return RecordingPool(clock)


@pytest.fixture
def press(pool, futures, clock):
    return Press(pool, futures, clock=clock)


def _json(payload: Payload) -> dict:
    return json.loads(payload.body)


def _open(press: Press, futures: FutureStore, *model_ids: str) -> None:
    for model_id in model_ids:
        create = CreateModel(model_id, "anvil/tiny-qwen3", LoraSpec(rank=4))
        press.open_model(model_id, TrainOp(model_id, 0, futures.create("CreateModel", OWNER), create))
    press.run_tick()


def _fb(futures: FutureStore, model_id: str, seq: int, lengths: tuple[int, ...] = (3,)) -> TrainOp:
    data = [TrainDatum(np.zeros(n, np.int64), {"target_tokens": np.zeros(n, np.int64)}) for n in lengths]
    work = ForwardBackwardWork(data=data, loss_fn="cross_entropy", loss_config={}, forward_only=False)
    return TrainOp(model_id, seq, futures.create("ForwardBackward", OWNER), ForwardBackward(model_id, work),
                   finish=lambda result: Payload.json(result.metrics))


def _optim(futures: FutureStore, model_id: str, seq: int) -> TrainOp:
    return TrainOp(model_id, seq, futures.create("OptimStep", OWNER), OptimStep(model_id, AdamStep()),
                   finish=lambda result: Payload.json({"metrics": result.metrics}))


def _load(futures: FutureStore, model_id: str, seq: int) -> TrainOp:
    return TrainOp(model_id, seq, futures.create("LoadWeights", OWNER), LoadState(model_id, "/ckpt", with_optimizer=True),
                   finish=lambda result: Payload.json({"model_id": result.model_id}))


def _outcome(loop, futures: FutureStore, op: TrainOp) -> dict:
    return _json(loop.run_until_complete(futures.wait(op.request_id, OWNER, 1.0)))


def test_one_batch_per_round_across_models_then_barriers(press, pool, futures):
    models = ["m1", "m2", "m3"]
    _open(press, futures, *models)
    assert pool.calls == [("CreateModel", m) for m in models]
    pool.calls.clear()
    # every model pipelines forward_backward, optim_step, forward_backward, optim_step
    for model_id in models:
        press.submit(_fb(futures, model_id, 1))
        press.submit(_optim(futures, model_id, 2))
        press.submit(_fb(futures, model_id, 3))
        press.submit(_optim(futures, model_id, 4))
    stats = press.run_tick()
    assert pool.calls == [
        ("batch", ("m1", "m2", "m3")),
        ("OptimStep", "m1"), ("OptimStep", "m2"), ("OptimStep", "m3"),
        ("batch", ("m1", "m2", "m3")),
        ("OptimStep", "m1"), ("OptimStep", "m2"), ("OptimStep", "m3"),
    ]
    assert (stats.rounds, stats.batches, stats.barriers, stats.ops) == (2, 2, 6, 12)
    assert press.run_tick() == TickStats(), "nothing is left for another tick"


def test_seq_order_not_arrival_order_and_duplicates_run_once(press, pool, futures, loop):
    _open(press, futures, "m")
    pool.calls.clear()
    second = _optim(futures, "m", 2)
    assert press.submit(second) == second.request_id
    first, resent = _fb(futures, "m", 1), _fb(futures, "m", 1)
    assert press.submit(first) == first.request_id
    assert press.submit(resent) == first.request_id, "a re-sent seq_id gets the first request id"
    press.run_tick()
    assert pool.calls == [("batch", ("m",)), ("OptimStep", "m")]
    assert _outcome(loop, futures, first) == {"loss:sum": 1.0}
    assert _outcome(loop, futures, second) == {"metrics": {"grad_norm": 0.5}}
    assert press.submit(_fb(futures, "m", 1)) == first.request_id, "also once it has run"
    assert press.run_tick().ops == 0


def test_a_missing_seq_id_is_skipped_after_the_gap_timeout(press, pool, futures, clock):
    _open(press, futures, "m")
    pool.calls.clear()
    press.submit(_optim(futures, "m", 2))  # seq 1 never comes
    assert press.run_tick().ops == 0
    clock.now += SEQ_GAP_TIMEOUT_S / 2
    assert press.run_tick().ops == 0, "seq 2 waits for seq 1 a while"
    clock.now += SEQ_GAP_TIMEOUT_S
    assert press.run_tick().ops == 1
    assert pool.calls == [("OptimStep", "m")]


def test_a_barrier_failing_with_a_user_error_fails_only_its_future(press, pool, futures, loop):
    _open(press, futures, "m1", "m2")
    pool.calls.clear()
    pool.failures[(LoadState, "m1")] = CommandFailure("user", "checkpoint targets different layers than this model")
    ops = [_load(futures, "m1", 1), _fb(futures, "m1", 2), _load(futures, "m2", 1), _fb(futures, "m2", 2)]
    for op in ops:
        press.submit(op)
    stats = press.run_tick()
    assert _outcome(loop, futures, ops[0]) == {
        "error": "checkpoint targets different layers than this model", "category": "user"
    }
    assert _outcome(loop, futures, ops[1]) == {"loss:sum": 1.0}
    assert _outcome(loop, futures, ops[2]) == {"model_id": "m2"}
    assert _outcome(loop, futures, ops[3]) == {"loss:sum": 1.0}
    assert pool.calls == [("LoadState", "m1"), ("LoadState", "m2"), ("batch", ("m1", "m2"))]
    assert stats.failed == 1


def test_a_failed_batch_fails_all_its_ops_and_the_press_goes_on(press, pool, futures, loop):
    _open(press, futures, "m1", "m2")
    pool.next_batch = CommandFailure("server", "RuntimeError: out of memory")
    failed = [_fb(futures, "m1", 1), _fb(futures, "m2", 1), _fb(futures, "m2", 2)]
    after = [_optim(futures, "m1", 2), _optim(futures, "m2", 3), _fb(futures, "m2", 4)]
    for op in failed + after:
        press.submit(op)
    stats = press.run_tick()
    for op in failed:
        assert _outcome(loop, futures, op) == {"error": "RuntimeError: out of memory", "category": "server"}
    assert _outcome(loop, futures, after[0]) == {"metrics": {"grad_norm": 0.5}}
    assert _outcome(loop, futures, after[1]) == {"metrics": {"grad_norm": 0.5}}
    assert _outcome(loop, futures, after[2]) == {"loss:sum": 1.0}
    assert (stats.batches, stats.failed, stats.ops) == (2, 3, 6)


def test_a_pool_that_raises_fails_the_batch_not_the_press(press, pool, futures, loop):
    _open(press, futures, "m")
    pool.next_batch = ConnectionError("trainer process went away")
    failed, after = _fb(futures, "m", 1), _fb(futures, "m", 2)
    press.submit(failed)
    press.run_tick()
    press.submit(after)
    press.run_tick()
    assert _outcome(loop, futures, failed) == {"error": "ConnectionError: trainer process went away", "category": "server"}
    assert _outcome(loop, futures, after) == {"loss:sum": 1.0}


def test_a_pre_failed_op_fails_in_its_turn_without_reaching_the_trainer(press, pool, futures, loop):
    _open(press, futures, "m")
    pool.calls.clear()
    invalid = TrainOp("m", 2, futures.create("OptimStep", OWNER), failure=CommandFailure("user", "adam_params.eps must be > 0"))
    for op in (_fb(futures, "m", 1), invalid, _fb(futures, "m", 3)):
        press.submit(op)
    stats = press.run_tick()
    assert _outcome(loop, futures, invalid) == {"error": "adam_params.eps must be > 0", "category": "user"}
    # the failure sits between the two forward_backwards in seq order, as a barrier would
    assert pool.calls == [("batch", ("m",)), ("batch", ("m",))]
    assert (stats.barriers, stats.failed) == (0, 1)


def test_a_failing_finish_fails_only_its_future(press, pool, futures, loop):
    _open(press, futures, "m")

    def refuse(result):
        raise UserError("sampler weights of m exist under another owner")

    def crash(result):
        raise OSError("metadata disk full")

    refused = TrainOp("m", 1, futures.create("SaveWeights", OWNER), OptimStep("m", AdamStep()), finish=refuse)
    crashed = TrainOp("m", 2, futures.create("SaveWeights", OWNER), OptimStep("m", AdamStep()), finish=crash)
    fine = _optim(futures, "m", 3)
    for op in (refused, crashed, fine):
        press.submit(op)
    press.run_tick()
    assert _outcome(loop, futures, refused) == {"error": "sampler weights of m exist under another owner", "category": "user"}
    assert _outcome(loop, futures, crashed) == {"error": "OSError: metadata disk full", "category": "server"}
    assert _outcome(loop, futures, fine) == {"metrics": {"grad_norm": 0.5}}


def test_tick_stats(press, pool, futures, clock):
    _open(press, futures, "m1", "m2")
    submitted = clock.now
    press.submit(_fb(futures, "m1", 1, lengths=(3, 4)))
    press.submit(_optim(futures, "m1", 2))
    press.submit(_fb(futures, "m2", 1, lengths=(5,)))
    assert press.queued_ops() == 3
    clock.now = submitted + 2.0
    stats = press.run_tick()
    # the batch is taken as the tick starts; m1's optim_step once the batch is done
    assert stats == TickStats(
        rounds=1, batches=1, rows=3, tokens=12, adapters=2, barriers=1, failed=0,
        queue_wait_s=(2.0, 2.0, 2.0 + BATCH_S), compute_s=BATCH_S + BARRIER_S,
    )
    assert stats.ops == 3
    assert press.queued_ops() == 0


def test_ticks_feed_the_press_metrics(press, futures):
    _open(press, futures, "m1", "m2")  # one tick of two creates
    press.submit(_fb(futures, "m1", 1, lengths=(3, 4)))
    press.submit(_fb(futures, "m2", 1, lengths=(5,)))
    press.run_tick()
    press.run_tick()  # nothing ready: not a tick
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for family in press.metrics.collect() for s in family.samples
    }
    assert samples[("anvil_press_ticks_total", ())] == 2
    assert samples[("anvil_train_rows_total", ())] == 3
    assert samples[("anvil_train_tokens_total", ())] == 12
    assert samples[("anvil_press_ops_total", (("outcome", "ok"),))] == 4
    assert samples[("anvil_press_tick_tokens_count", ())] == 1, "only ticks with forward/backward work"
    assert samples[("anvil_press_tick_tokens_sum", ())] == 12
    assert samples[("anvil_press_tick_adapters_sum", ())] == 2
    assert samples[("anvil_press_queue_wait_seconds_count", ())] == 4
    assert samples[("anvil_press_compute_seconds_sum", ())] == 2 * BARRIER_S + BATCH_S


def test_an_op_has_a_command_or_a_failure():
    with pytest.raises(ValueError):
        TrainOp("m", 1, "req-1")
    with pytest.raises(ValueError):
        TrainOp("m", 1, "req-1", OptimStep("m", AdamStep()), failure=CommandFailure("user", "both"))


def test_a_large_forward_backward_runs_in_pieces_and_other_work_joins_between_them(pool, futures, clock, loop):
    press = Press(pool, futures, clock=clock, piece_tokens=15)
    _open(press, futures, "big", "small")
    pool.calls.clear()
    big = _fb(futures, "big", 1, lengths=(10, 10, 10))  # three pieces of one datum each
    press.submit(big)
    press.submit(_optim(futures, "big", 2))
    small = [_fb(futures, "small", 1), _optim(futures, "small", 2)]
    pool.during_next_batch = lambda: [press.submit(op) for op in small]
    stats = press.run_tick()
    assert pool.calls == [
        ("batch", ("big",)),
        ("batch", ("big", "small")), ("OptimStep", "small"),
        ("batch", ("big",)), ("OptimStep", "big"),
    ]
    assert _outcome(loop, futures, big) == {"loss:sum": 3.0}, "the pieces' sums add up"
    assert _outcome(loop, futures, small[1]) == {"metrics": {"grad_norm": 0.5}}
    assert stats.ops == 4 and stats.batches == 3


def test_a_failed_piece_fails_its_request_and_frees_the_queue(pool, futures, clock, loop):
    press = Press(pool, futures, clock=clock, piece_tokens=15)
    _open(press, futures, "big")
    pool.calls.clear()
    big, after = _fb(futures, "big", 1, lengths=(10, 10)), _optim(futures, "big", 2)
    press.submit(big)
    press.submit(after)
    pool.during_next_batch = lambda: setattr(pool, "next_batch", CommandFailure("server", "RuntimeError: out of memory"))
    press.run_tick()
    failed = _outcome(loop, futures, big)
    assert failed["category"] == "server" and "after 1 of its 2 pieces" in failed["error"]
    assert _outcome(loop, futures, after) == {"metrics": {"grad_norm": 0.5}}


def test_the_press_hands_settled_training_results_to_the_curves(pool, futures, clock, loop, tmp_path):
    """What succeeded is recorded, in seq order, per model; what failed is not; a recorder that
    breaks costs its points, not the results (nor the press)."""
    from gateway.store import RunCurves
    from gateway.training_curves import CurveRecorder

    curves = RunCurves(open_engine(f"sqlite:///{tmp_path / 'curves.sqlite'}"))
    recorder = CurveRecorder(curves)
    press = Press(pool, futures, clock=clock, curves=recorder)
    _open(press, futures, "m1", "m2")
    pool.failures[(OptimStep, "m2")] = CommandFailure("user", "no")
    for op in (_fb(futures, "m1", 1), _optim(futures, "m1", 2), _fb(futures, "m1", 3),
               _fb(futures, "m2", 1), _optim(futures, "m2", 2)):
        press.submit(op)
    press.run_tick()
    press.unload("m1")
    press.run_tick()

    def broken(*args):
        raise RuntimeError("the recorder broke")

    recorder.record = broken
    _open(press, futures, "m1")
    last = _fb(futures, "m1", 1)
    press.submit(last)
    press.run_tick()
    assert _outcome(loop, futures, last) == {"loss:sum": 1.0}
    recorder.close()
    points = {m: {p.step: p.values for p in curves.points(m, 0, 10)} for m in ("m1", "m2")}
    assert points == {
        "m1": {1: {"loss:sum": 1.0, "grad_norm": 0.5}, 2: {"loss:sum": 1.0}},
        "m2": {1: {"loss:sum": 1.0}},
    }
    assert curves.steps_done(["m1", "m2"]) == {"m1": 1}
