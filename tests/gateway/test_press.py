"""The press: seq order per model, one batch per round across models, barriers between rounds."""

import asyncio
import json

import pytest

from anvil.types import ForwardBackwardResult, ForwardBackwardWork
from gateway.futures import FutureStore, Payload
from gateway.press import Press, TrainOp


class RecordingTrainer:
    """Stands in for the trainer: records the calls the press makes, in order."""

    def __init__(self):
        self.calls: list[tuple] = []

    def forward_backward(self, items):
        self.calls.append(("batch", tuple(sorted(model_id for model_id, _ in items))))
        return [ForwardBackwardResult(logprobs=[], metrics={"loss:sum": 1.0}) for _ in items]


def _work() -> ForwardBackwardWork:
    return ForwardBackwardWork(data=[], loss_fn="cross_entropy", loss_config={}, forward_only=False)


@pytest.fixture
def press():
    loop = asyncio.new_event_loop()
    futures = FutureStore(loop)
    trainer = RecordingTrainer()
    press = Press(trainer, futures)
    yield press, trainer, futures, loop
    press.stop()
    loop.close()


def _open(press: Press, futures: FutureStore, model_id: str) -> None:
    press.open_model(model_id, TrainOp(model_id, 0, futures.create("CreateModel"), barrier=lambda w: {}))


def _barrier(model_id: str, seq: int, futures: FutureStore, trainer: RecordingTrainer) -> TrainOp:
    return TrainOp(model_id, seq, futures.create("OptimStep"), barrier=lambda w: trainer.calls.append(("optim", model_id)) or {})


def test_one_batch_per_round_across_models_then_barriers(press):
    press, trainer, futures, loop = press
    models = ["m1", "m2", "m3"]
    for model_id in models:
        _open(press, futures, model_id)
    # every model pipelines forward_backward, optim_step, forward_backward, optim_step
    for model_id in models:
        press.submit(TrainOp(model_id, 1, futures.create("ForwardBackward"), work=_work(), finish=lambda r: Payload.json({})))
        press.submit(_barrier(model_id, 2, futures, trainer))
        press.submit(TrainOp(model_id, 3, futures.create("ForwardBackward"), work=_work(), finish=lambda r: Payload.json({})))
        press.submit(_barrier(model_id, 4, futures, trainer))
    press.start()
    _drain(press)
    assert trainer.calls == [
        ("batch", ("m1", "m2", "m3")),
        ("optim", "m1"), ("optim", "m2"), ("optim", "m3"),
        ("batch", ("m1", "m2", "m3")),
        ("optim", "m1"), ("optim", "m2"), ("optim", "m3"),
    ]
    assert press.ticks == 1


def test_seq_order_not_arrival_order_and_duplicates_run_once(press):
    press, trainer, futures, loop = press
    _open(press, futures, "m")
    press.start()
    second = _barrier("m", 2, futures, trainer)
    assert press.submit(second) == second.request_id
    first = TrainOp("m", 1, futures.create("ForwardBackward"), work=_work(), finish=lambda r: Payload.json({}))
    resent = TrainOp("m", 1, futures.create("ForwardBackward"), work=_work(), finish=lambda r: Payload.json({}))
    assert press.submit(first) == first.request_id
    assert press.submit(resent) == first.request_id, "a re-sent seq_id gets the first request id"
    _drain(press)
    assert trainer.calls == [("batch", ("m",)), ("optim", "m")]


def test_a_missing_seq_id_is_skipped_after_the_gap_timeout(press, monkeypatch):
    import gateway.press as press_module

    monkeypatch.setattr(press_module, "SEQ_GAP_TIMEOUT_S", 0.2)
    press, trainer, futures, loop = press
    _open(press, futures, "m")
    press.start()
    press.submit(_barrier("m", 2, futures, trainer))  # seq 1 never comes
    _drain(press, timeout_s=5.0, until=lambda: trainer.calls)
    assert trainer.calls == [("optim", "m")]


def test_a_failing_barrier_fails_its_future_and_the_press_goes_on(press):
    press, trainer, futures, loop = press
    _open(press, futures, "m")

    def boom(worker):
        raise RuntimeError("disk full")

    failing = TrainOp("m", 1, futures.create("SaveWeights"), barrier=boom)
    press.submit(failing)
    press.submit(_barrier("m", 2, futures, trainer))
    press.start()
    _drain(press)
    payload = loop.run_until_complete(futures.wait(failing.request_id, 1.0))
    assert json.loads(payload.body) == {"error": "RuntimeError: disk full", "category": "server"}
    assert trainer.calls == [("optim", "m")]


def _drain(press: Press, timeout_s: float = 5.0, until=None) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with press._cond:
            idle = not any(q.pending for q in press._queues.values())
        if (until() if until else idle) and idle:
            time.sleep(0.05)  # let the tick that took the last op finish it
            return
        time.sleep(0.01)
    raise AssertionError("the press did not drain")
