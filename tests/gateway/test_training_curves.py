"""Training curves: which step each result belongs to, how a step's results combine, the bounds,
and what the store gives back (on SQLite and PostgreSQL)."""

import math

import pytest

from anvil.types import AdamStep, ForwardBackwardResult, ForwardBackwardWork
from gateway.store import RunCurves, StepPoints, open_engine
from gateway.training_curves import MAX_NAMES, MAX_STEPS, CurveRecorder
from anvil.types import LoraSpec
from trainer.commands import CreateModel, CreateResult, ForwardBackward, OptimStep, OptimStepResult

MODEL = "sess-1:train:0"


@pytest.fixture
def curves(store_url):
    engine = open_engine(store_url)
    yield RunCurves(engine)
    engine.dispose()


def _fb(metrics: dict, model_id: str = MODEL, forward_only: bool = False):
    work = ForwardBackwardWork(data=[], loss_fn="cross_entropy", loss_config={}, forward_only=forward_only)
    return ForwardBackward(model_id, work), ForwardBackwardResult(logprobs=[], metrics=metrics)


def _optim(metrics: dict, model_id: str = MODEL):
    return OptimStep(model_id, AdamStep(learning_rate=1e-3)), OptimStepResult(metrics)


def _record(recorder: CurveRecorder, *results, model_id: str = MODEL) -> None:
    for command, result in results:
        recorder.record(model_id, command, result)


def _curve(curves: RunCurves, model_id: str = MODEL) -> dict[int, dict]:
    return {p.step: p.values for p in curves.points(model_id, 0, MAX_STEPS + 10)}


def test_one_optim_step_is_one_step_and_the_forward_backwards_before_it_belong_to_it(curves):
    recorder = CurveRecorder(curves)
    _record(recorder, _fb({"loss:sum": 4.0}), _optim({"grad_norm:mean": 1.5}), _fb({"loss:sum": 3.0}),
            _optim({}), _fb({"loss:sum": 2.0}))
    recorder.close()
    assert _curve(curves) == {1: {"loss:sum": 4.0, "grad_norm:mean": 1.5}, 2: {"loss:sum": 3.0}, 3: {"loss:sum": 2.0}}
    # steps done counts optim_steps, also one that reported nothing; step 3 is still open
    assert curves.steps_done([MODEL, "sess-1:train:9"]) == {MODEL: 2}


def test_a_step_of_several_forward_backwards_combines_them_as_their_names_say(curves):
    recorder = CurveRecorder(curves)
    _record(recorder,
            _fb({"loss:sum": 1.0, "x:mean": 2.0, "y:max": 1.0, "z:min": 5.0, "w": 1.0}),
            _fb({"loss:sum": 2.5, "x:mean": 4.0, "y:max": 7.0, "z:min": 6.0, "w": 2.0}),
            _fb({"loss:sum": 0.5, "x:mean": 9.0, "y:max": 3.0, "z:min": -1.0, "w": 6.0}),
            _optim({}))
    recorder.close()
    assert _curve(curves)[1] == {"loss:sum": 4.0, "x:mean": 5.0, "y:max": 7.0, "z:min": -1.0, "w": 3.0}


def test_forward_is_not_training_nan_is_unknown_and_runs_are_apart(curves):
    recorder = CurveRecorder(curves)
    _record(recorder, _fb({"loss:sum": 9.0}, forward_only=True), _fb({"loss:sum": float("nan"), "a": 1.0}),
            _fb({"a": float("inf")}), _optim({}))
    _record(recorder, _fb({"loss:sum": 1.0}, model_id="other"), model_id="other")
    recorder.close()
    assert _curve(curves) == {1: {"loss:sum": None, "a": None}}
    assert _curve(curves, "other") == {1: {"loss:sum": 1.0}}


def test_a_model_created_again_under_its_id_starts_a_new_curve(curves):
    recorder = CurveRecorder(curves)
    _record(recorder, _fb({"loss:sum": 1.0}), _optim({}), _fb({"loss:sum": 2.0}), _optim({}))
    recorder.close()
    assert curves.steps_done([MODEL]) == {MODEL: 2}
    recorder = CurveRecorder(curves)
    _record(recorder, _fb({"loss:sum": 5.0}), _optim({}))
    recorder.forget(MODEL)  # unloaded, then the same session creates model_seq_id 0 again
    _record(recorder, (CreateModel(MODEL, "anvil/tiny-qwen3", LoraSpec(4)), CreateResult(MODEL)), _fb({"loss:sum": 7.0}))
    recorder.close()
    assert _curve(curves) == {1: {"loss:sum": 7.0}}
    assert curves.steps_done([MODEL]) == {}


def test_names_per_step_and_their_length_are_bounded(curves):
    recorder = CurveRecorder(curves)
    many = {f"m{i:03d}": float(i) for i in range(MAX_NAMES + 5)}
    _record(recorder, _fb({**many, "n" * 200: 1.0}), _fb({"m999": 1.0, "m000": 1.0}), _optim({}))
    recorder.close()
    kept = _curve(curves)[1]
    assert sorted(kept) == sorted(many)[:MAX_NAMES]  # the first reported, in name order
    assert kept["m000"] == 0.5


def test_steps_beyond_the_cap_are_counted_not_stored(curves, monkeypatch):
    import gateway.training_curves as training_curves

    monkeypatch.setattr(training_curves, "MAX_STEPS", 3)
    recorder = CurveRecorder(curves)
    for step in range(1, 6):
        _record(recorder, _fb({"loss:sum": float(step)}), _optim({}))
    recorder.close()
    assert sorted(_curve(curves)) == [1, 2, 3]
    assert curves.steps_done([MODEL]) == {MODEL: 5}


def test_points_page_by_step(curves):
    curves.write([StepPoints(MODEL, s, {"loss:sum": s / 2, "b": -s}) for s in range(1, 8)], {MODEL: 7})
    page = curves.points(MODEL, 2, 3)
    assert [p.step for p in page] == [3, 4, 5]
    assert page[0].values == {"loss:sum": 1.5, "b": -3.0}
    assert [p.step for p in curves.points(MODEL, 5, 100)] == [6, 7]
    assert curves.points(MODEL, 7, 100) == [] and curves.points("nobody", 0, 100) == []
    # a later write replaces a step's value
    curves.write([StepPoints(MODEL, 7, {"b": 0.25})], {})
    assert curves.points(MODEL, 6, 1)[0].values == {"loss:sum": 3.5, "b": 0.25}
    assert math.isclose(curves.points(MODEL, 0, 1)[0].values["loss:sum"], 0.5)
