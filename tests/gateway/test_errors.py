"""The one classification of errors: every layer's user errors are 4xx answers (or `user`
failures) naming the field, for both APIs, and a validation error never echoes the value."""

import math

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException

from anvil.errors import Conflict, NotFound, Unauthorized, UserError, failure_of
from gateway import wire
from gateway.errors import answer_of, install_error_handlers, tinker_body
from gateway.openai_errors import OpenAIError, openai_body
from losses.types import LossInputError
from sampler.engine import SampleRejected
from trainer.errors import IncompatibleCheckpoint


@pytest.mark.parametrize(
    "exc, status, category",
    [
        (UserError("x"), 400, "user"),
        (NotFound("x"), 404, "user"),
        (Conflict("x"), 409, "user"),
        (Unauthorized("x"), 401, "user"),
        (LossInputError("data[0].loss_fn_inputs['weights']", "contains NaN"), 400, "user"),
        (IncompatibleCheckpoint("checkpoint rank 8 differs from the model's 4"), 400, "user"),
        (SampleRejected("prompt longer than the engine's context"), 400, "user"),
        (OpenAIError("gone", status=404, param="model"), 404, "user"),
        (KeyError("m1"), 500, "server"),
        (MemoryError(), 500, "server"),
    ],
)
def test_every_layer_is_classified_alike(exc, status, category):
    assert answer_of(exc).status == status
    assert failure_of(exc)[0] == category


def test_a_loss_input_error_names_its_field():
    answer = answer_of(LossInputError("loss_fn_config['clip_low_threshold']", "must be a finite number"))
    assert answer.field == "loss_fn_config['clip_low_threshold']"
    assert answer.message.startswith("loss_fn_config['clip_low_threshold']: ")


def test_http_errors_keep_their_status():
    assert answer_of(HTTPException(405, "Method Not Allowed")).status == 405


class _Body(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False)
    session_id: str
    count: int = 0
    rate: float = 1.0


def _app(render) -> TestClient:
    app = FastAPI()

    @app.post("/echo")
    async def echo(body: _Body) -> dict:
        return {}

    @app.post("/refuse")
    async def refuse() -> dict:
        raise NotFound("model_id 'm' not found", field="model_id")

    @app.post("/crash")
    async def crash() -> dict:
        raise RuntimeError("boom")

    install_error_handlers(app, render)
    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize("render", [tinker_body, openai_body], ids=["tinker", "openai"])
def test_both_shapes_answer_the_same_statuses(render):
    client = _app(render)
    nan = client.post("/echo", content=b'{"session_id": NaN, "rate": Infinity}', headers={"Content-Type": "application/json"})
    assert nan.status_code == 400
    text = nan.text
    assert "session_id" in text and "rate" in text and "must be a finite number" in text
    assert "NaN" not in text and "Infinity" not in text and "nan" not in text.lower().replace("finite", "")
    huge = client.post("/echo", json={"session_id": "s" * 100_000})
    assert huge.status_code == 200  # the model itself has no bound: the answer is still small
    long_value = client.post("/echo", json={"session_id": 5, "count": "x" * 100_000})
    assert long_value.status_code == 400 and len(long_value.text) < 1000 and "count" in long_value.text
    assert client.post("/refuse").status_code == 404
    crashed = client.post("/crash")
    assert crashed.status_code == 500 and "boom" in crashed.text
    if render is openai_body:
        assert nan.json()["error"]["param"] == "session_id"
        assert client.post("/refuse").json()["error"]["param"] == "model_id"


def test_a_hand_validated_value_names_the_field_with_its_prefix():
    with pytest.raises(UserError) as caught:
        wire.parse(wire.AdamParamsWire, {"learning_rate": math.inf, "beta1": 1.0}, "adam_params")
    assert "adam_params.learning_rate must be a finite number" in caught.value.message
    assert "adam_params.beta1 must be < 1" in caught.value.message
    assert caught.value.field == "adam_params.learning_rate"


@pytest.mark.parametrize(
    "model, data, field",
    [
        (wire.SaveWeights, {"model_id": "m", "seq_id": 1, "ttl_seconds": 10**20}, "ttl_seconds"),
        (wire.SaveWeights, {"model_id": "m", "seq_id": 2**63}, "seq_id"),
        (wire.LoraConfigWire, {"seed": 2**63}, "seed"),
        (wire.LoraConfigWire, {"seed": -1}, "seed"),
        (wire.SamplingParamsWire, {"temperature": math.nan}, "temperature"),
        (wire.Sample, {"prompt": {"chunks": []}, "num_samples": 10**30}, "num_samples"),
        (wire.CreateSession, {"user_metadata": {"a": {"b": [math.inf]}}}, "user_metadata"),
        (wire.OptimStep, {"model_id": "m", "seq_id": 1, "adam_params": {"eps": math.inf}}, "adam_params.eps"),
        (wire.OptimStep, {"model_id": "m", "seq_id": 1, "adam_params": {"weight_decay": -1}}, "adam_params.weight_decay"),
    ],
)
def test_wire_bounds(model, data, field):
    with pytest.raises(UserError) as caught:
        wire.parse(model, data)
    assert caught.value.field == field
