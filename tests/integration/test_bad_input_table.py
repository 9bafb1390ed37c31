"""One table of bad requests over every route that takes input, sent as raw HTTP (so that nothing
is checked client-side first): each must get a 4xx, or a future failing with category `user`,
whose message names the field at fault; afterwards the server still trains.

Values the issue tracker saw answered with a 5xx are among them: NaN inside a wrongly typed field
(the 422 body could not be encoded), TTLs and offsets beyond int64, a tiny forward_backward
declaring a sparse tensor of shape [1, 10^12], seeds >= 2^63, learning_rate/eps = inf.
"""

from collections.abc import Callable
import dataclasses
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pytest
from tinker.proto import tinker_public_pb2 as pb

from sdk_helpers import API_KEY, TINY

HUGE = 10**30
INT64_END = 2**63
PROTOBUF = {"Content-Type": "application/x-protobuf"}


@dataclass
class Ctx:
    """What the cases refer to: a session, a live training model and its next seq_id, a sampling
    session, and a training and a sampler checkpoint of the model."""

    http: httpx.Client
    session_id: str = ""
    model_id: str = ""
    seq: int = 1
    sampling_session_id: str = ""
    weights_path: str = ""
    sampler_path: str = ""
    rank8_weights_path: str = ""
    attn_only_weights_path: str = ""

    def post(self, path: str, **kwargs) -> httpx.Response:
        return self.http.post(path, **kwargs)

    def result(self, request_id: str) -> dict | bytes:
        while True:
            response = self.http.post("/api/v1/retrieve_future", json={"request_id": request_id})
            assert response.status_code == 200, response.text
            if response.headers["content-type"].startswith("application/json"):
                body = response.json()
                if body.get("type") == "try_again":
                    continue
                return body
            return response.content

    def ok(self, path: str, body: dict) -> dict | bytes:
        response = self.post(path, json=body)
        assert response.status_code == 200, response.text
        answer = response.json()
        if "request_id" not in answer:
            return answer
        result = self.result(answer["request_id"])
        assert not (isinstance(result, dict) and "error" in result), result
        return result

    def train_op(self, path: str, body: dict) -> dict | bytes:
        result = self.ok(path, {"model_id": self.model_id, "seq_id": self.seq, **body})
        self.seq += 1
        return result


def _new_model(ctx: Ctx, model_seq_id: int, **lora) -> str:
    answer = ctx.ok("/api/v1/create_model", {
        "session_id": ctx.session_id, "model_seq_id": model_seq_id, "base_model": TINY,
        "lora_config": {"rank": 4, "seed": 3, **lora},
    })
    return answer["model_id"]


@pytest.fixture(scope="module")
def ctx(anvil_server):
    with httpx.Client(base_url=anvil_server.base_url, headers={"X-API-Key": API_KEY}, timeout=60) as http:
        c = Ctx(http)
        c.session_id = c.ok("/api/v1/create_session", {"tags": ["bad-input-table"]})["session_id"]
        c.model_id = _new_model(c, 0)
        c.weights_path = c.train_op("/api/v1/save_weights", {"path": "table-state"})["path"]
        c.sampler_path = c.train_op("/api/v1/save_weights_for_sampler", {"path": "table-sampler"})["path"]
        c.sampling_session_id = c.ok("/api/v1/create_sampling_session", {
            "session_id": c.session_id, "sampling_session_seq_id": 0, "base_model": TINY,
        })["sampling_session_id"]
        for seq, lora, attr in ((1, {"rank": 8}, "rank8_weights_path"), (2, {"train_mlp": False}, "attn_only_weights_path")):
            other = _new_model(c, seq, **lora)
            saved = c.ok("/api/v1/save_weights", {"model_id": other, "seq_id": 1, "path": f"table-{attr}"})
            setattr(c, attr, saved["path"])
        yield c


# request bodies


def tensor(values, dtype=pb.DTYPE_FLOAT32, shape=None) -> pb.Tensor:
    array = np.asarray(values, dtype="<i8" if dtype == pb.DTYPE_INT64 else "<f4")
    return pb.Tensor(dtype=dtype, shape=list(array.shape) if shape is None else shape, dense=array.tobytes())


def sparse(shape, values=(), crow=None, col=()) -> pb.Tensor:
    crow = [0, len(values)] if crow is None else crow
    csr = pb.SparseCsr(values=np.asarray(values, "<i8").tobytes(), crow_indices=np.asarray(crow, "<i8").tobytes(),
                       col_indices=np.asarray(col, "<i8").tobytes())
    return pb.Tensor(dtype=pb.DTYPE_INT64, shape=shape, sparse_csr=csr)


def fwd(tokens=(1, 2, 3), loss_fn="cross_entropy", config=None, text_config=None, model_id=None, seq=None,
        data=True, **inputs) -> Callable[[Ctx], bytes]:
    """A forward_backward protobuf: one datum of `tokens`, next-token targets and unit weights
    unless `inputs` replace them."""

    def build(c: Ctx) -> bytes:
        message = pb.ForwardBackwardRequest(
            model_id=c.model_id if model_id is None else model_id, seq_id=c.seq if seq is None else seq,
            loss_fn=loss_fn, forward_only=False,
        )
        for key, value in (config or {}).items():
            message.loss_fn_config[key] = value
        for key, value in (text_config or {}).items():
            message.loss_fn_config_v2[key].text = value
        if data:
            datum = message.data.add()
            datum.model_input.add().encoded_text.tokens = np.asarray(tokens, "<i4").tobytes()
            n = len(tokens)
            defaults = {"target_tokens": tensor([1] * n, pb.DTYPE_INT64), "weights": tensor([1.0] * n)}
            for name, value in {**defaults, **inputs}.items():
                if value is not None:
                    datum.loss_fn_inputs[name].CopyFrom(value)
        return message.SerializeToString()

    return build


def seq_op(**fields) -> Callable[[Ctx], dict]:
    return lambda c: {"model_id": c.model_id, "seq_id": c.seq, **fields}


def seq_text(template: str) -> Callable[[Ctx], str]:
    """A JSON body as text (NaN and Infinity cannot be written with json=), with the model and seq."""
    return lambda c: template.replace("MODEL", c.model_id).replace("SEQ", str(c.seq))


def adam(**params) -> Callable[[Ctx], dict]:
    return seq_op(adam_params={"learning_rate": 1e-4, **params})


def sample(**params) -> Callable[[Ctx], dict]:
    top = {k: params.pop(k) for k in list(params) if k in ("num_samples", "prompt", "topk_prompt_logprobs",
                                                              "topk_sample_logprobs", "seq_id")}
    return lambda c: {
        "sampling_session_id": c.sampling_session_id, "seq_id": 0, "num_samples": 1,
        "prompt": {"chunks": [{"type": "encoded_text", "tokens": [1, 2, 3]}]},
        "sampling_params": {"max_tokens": 2, **params}, **top,
    }


def sample_text(fragment: str) -> Callable[[Ctx], str]:
    return lambda c: (
        '{"sampling_session_id": "%s", "seq_id": 0, "num_samples": 1, '
        '"prompt": {"chunks": [{"type": "encoded_text", "tokens": [1, 2, 3]}]}, %s}' % (c.sampling_session_id, fragment)
    )


def chat(**fields) -> dict:
    return {"model": TINY, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, **fields}


def completion(**fields) -> dict:
    return {"model": TINY, "prompt": "Hi", "max_tokens": 2, **fields}


# the table


@dataclass(frozen=True)
class Case:
    id: str
    method: str
    route: str  # may name {model_id}, {session_id}, {sampling_session_id}
    body: Any = None  # a JSON value, JSON text, protobuf bytes, or a function of the Ctx giving one
    field: str = ""  # the message must name it
    status: int | None = 400  # None: accepted, and its future fails with category "user"
    params: dict = dataclasses.field(default_factory=dict)
    headers: dict = dataclasses.field(default_factory=dict)


U = None  # a failed future of category "user"
F = "/api/v1/forward_backward"

CASES = [
    # keys
    Case("key-prefix-only", "POST", "/api/v1/create_session", {}, "X-API-Key", 401, headers={"X-API-Key": "tml-"}),
    Case("key-whitespace", "POST", "/api/v1/create_session", {}, "X-API-Key", 401, headers={"X-API-Key": "tml-a b"}),
    Case("key-too-long", "POST", "/api/v1/create_session", {}, "X-API-Key", 401, headers={"X-API-Key": "tml-" + "k" * 300}),
    Case("key-not-tml", "POST", "/api/v1/create_session", {}, "X-API-Key", 401, headers={"X-API-Key": "sk-abc"}),
    Case("key-missing", "POST", "/api/v1/create_session", {}, "X-API-Key", 401, headers={"X-API-Key": ""}),
    Case("v1-bearer-prefix-only", "GET", "/v1/models", None, "Authorization", 401, headers={"Authorization": "Bearer tml-"}),
    Case("v1-bearer-not-bearer", "GET", "/v1/models", None, "Authorization", 401, headers={"Authorization": "Basic tml-x"}),
    # create_session, session_heartbeat, finish, sessions
    Case("session-tags-nan", "POST", "/api/v1/create_session", '{"tags": [NaN]}', "tags"),
    Case("session-tags-not-a-list", "POST", "/api/v1/create_session", {"tags": "abc"}, "tags"),
    Case("session-tags-huge-array", "POST", "/api/v1/create_session", {"tags": ["t"] * 10_000}, "tags"),
    Case("session-metadata-nan", "POST", "/api/v1/create_session", '{"tags": [], "user_metadata": {"a": [1, NaN]}}', "user_metadata"),
    Case("session-metadata-huge", "POST", "/api/v1/create_session", {"user_metadata": {"a": "x" * 100_000}}, "user_metadata"),
    Case("session-body-not-json", "POST", "/api/v1/create_session", "{not json", "JSON"),
    Case("session-body-deeply-nested", "POST", "/api/v1/create_session", '{"tags": ' + "[" * 100_000 + "]" * 100_000 + "}", "body"),
    Case("heartbeat-session-id-nan", "POST", "/api/v1/session_heartbeat", '{"session_id": NaN}', "session_id"),
    Case("heartbeat-session-id-inf", "POST", "/api/v1/session_heartbeat", '{"session_id": -Infinity}', "session_id"),
    Case("heartbeat-missing", "POST", "/api/v1/session_heartbeat", {}, "session_id"),
    Case("heartbeat-huge-string", "POST", "/api/v1/session_heartbeat", {"session_id": "s" * 100_000}, "session_id"),
    Case("heartbeat-unknown", "POST", "/api/v1/session_heartbeat", {"session_id": "sess-nope"}, "session_id", 404),
    Case("finish-unknown", "POST", "/api/v1/sessions/sess-nope/finish", None, "session_id", 404),
    Case("get-session-unknown", "GET", "/api/v1/sessions/sess-nope", None, "session_id", 404),
    # create_model, get_info
    Case("create-model-seq-nan", "POST", "/api/v1/create_model",
         lambda c: '{"session_id": "%s", "model_seq_id": NaN, "base_model": "%s"}' % (c.session_id, TINY), "model_seq_id"),
    Case("create-model-seq-huge", "POST", "/api/v1/create_model",
         lambda c: {"session_id": c.session_id, "model_seq_id": HUGE, "base_model": TINY}, "model_seq_id"),
    Case("create-model-seq-negative", "POST", "/api/v1/create_model",
         lambda c: {"session_id": c.session_id, "model_seq_id": -1, "base_model": TINY}, "model_seq_id"),
    Case("create-model-rank-zero", "POST", "/api/v1/create_model",
         lambda c: {"session_id": c.session_id, "model_seq_id": 90, "base_model": TINY, "lora_config": {"rank": 0}}, "lora_config.rank"),
    Case("create-model-rank-huge", "POST", "/api/v1/create_model",
         lambda c: {"session_id": c.session_id, "model_seq_id": 90, "base_model": TINY, "lora_config": {"rank": 10**6}}, "lora_config.rank"),
    Case("create-model-seed-2^63", "POST", "/api/v1/create_model",
         lambda c: {"session_id": c.session_id, "model_seq_id": 90, "base_model": TINY, "lora_config": {"seed": INT64_END}}, "lora_config.seed"),
    Case("create-model-seed-negative", "POST", "/api/v1/create_model",
         lambda c: {"session_id": c.session_id, "model_seq_id": 90, "base_model": TINY, "lora_config": {"seed": -1}}, "lora_config.seed"),
    Case("create-model-seed-nan", "POST", "/api/v1/create_model",
         lambda c: '{"session_id": "%s", "model_seq_id": 90, "base_model": "%s", "lora_config": {"seed": NaN}}' % (c.session_id, TINY),
         "lora_config.seed"),
    Case("create-model-no-targets", "POST", "/api/v1/create_model",
         lambda c: {"session_id": c.session_id, "model_seq_id": 90, "base_model": TINY,
                    "lora_config": {"train_attn": False, "train_mlp": False, "train_unembed": False}}, "lora_config"),
    Case("create-model-unknown-base", "POST", "/api/v1/create_model",
         lambda c: {"session_id": c.session_id, "model_seq_id": 90, "base_model": "no/such-model"}, "base_model"),
    Case("create-model-base-wrong-type", "POST", "/api/v1/create_model",
         lambda c: {"session_id": c.session_id, "model_seq_id": 90, "base_model": 5}, "base_model"),
    Case("create-model-unknown-session", "POST", "/api/v1/create_model",
         {"session_id": "sess-nope", "model_seq_id": 90, "base_model": TINY}, "session_id", 404),
    Case("create-model-no-session", "POST", "/api/v1/create_model", {"model_seq_id": 90, "base_model": TINY}, "session_id"),
    Case("create-model-optimizer", "POST", "/api/v1/create_model",
         lambda c: {"session_id": c.session_id, "model_seq_id": 90, "base_model": TINY, "optimizer_config": {"type": "sgd"}}, "optimizer"),
    Case("get-info-unknown", "POST", "/api/v1/get_info", {"model_id": "sess-nope:train:0"}, "model_id", 404),
    Case("get-info-wrong-type", "POST", "/api/v1/get_info", {"model_id": ["x"]}, "model_id"),
    Case("unload-unknown", "POST", "/api/v1/unload_model", {"model_id": "sess-nope:train:0"}, "model_id", 404),
    Case("unload-wrong-type", "POST", "/api/v1/unload_model", {"model_id": 7}, "model_id"),
    Case("unload-missing", "POST", "/api/v1/unload_model", {}, "model_id"),
    Case("unload-nan", "POST", "/api/v1/unload_model", '{"model_id": NaN}', "model_id"),
    # forward_backward: refused at once
    Case("fwd-garbage", "POST", F, b"\xff\xfe not a protobuf", "ForwardBackwardRequest"),
    Case("fwd-no-model-id", "POST", F, fwd(model_id=""), "model_id"),
    Case("fwd-unknown-model", "POST", F, fwd(model_id="sess-nope:train:0"), "model_id", 404),
    Case("fwd-model-id-huge", "POST", F, fwd(model_id="m" * 100_000), "model_id"),
    Case("fwd-seq-zero", "POST", F, fwd(seq=0), "seq_id"),
    Case("fwd-seq-negative", "POST", F, fwd(seq=-5), "seq_id"),
    Case("fwd-bad-zstd", "POST", F, b"\x28\xb5\x2f\xfd garbage", "zstd", headers={"Content-Encoding": "zstd"}),
    # forward_backward: failed in its turn
    Case("fwd-sparse-1x10^12", "POST", F, fwd(tokens=[5], target_tokens=sparse([1, 10**12])), "target_tokens", U),
    Case("fwd-sparse-more-rows-than-tokens", "POST", F, fwd(target_tokens=sparse([10**6, 2])), "target_tokens", U),
    Case("fwd-sparse-bad-indices", "POST", F, fwd(target_tokens=sparse([3, 4], values=[1], crow=[0, 1, 0, 1], col=[9])), "target_tokens", U),
    Case("fwd-dense-shape-absurd", "POST", F, fwd(target_tokens=tensor([1, 2, 3], pb.DTYPE_INT64, [1, 10**12])), "target_tokens", U),
    Case("fwd-dense-shape-negative", "POST", F, fwd(weights=tensor([1.0] * 3, shape=[-1])), "weights", U),
    Case("fwd-dense-3d", "POST", F, fwd(weights=tensor([1.0] * 3, shape=[3, 1, 1])), "weights", U),
    Case("fwd-dense-short-data", "POST", F, fwd(weights=tensor([1.0], shape=[3])), "weights", U),
    Case("fwd-unsupported-dtype", "POST", F, fwd(weights=pb.Tensor(dtype=pb.DTYPE_BFLOAT16, shape=[3], dense=b"\0" * 6)), "weights", U),
    Case("fwd-weights-nan", "POST", F, fwd(weights=tensor([1.0, float("nan"), 1.0])), "weights", U),
    Case("fwd-weights-inf", "POST", F, fwd(weights=tensor([1.0, float("inf"), 1.0])), "weights", U),
    Case("fwd-weights-1e30", "POST", F, fwd(weights=tensor([1.0, 1e30, 1.0])), "weights", U),
    Case("fwd-weights-wrong-length", "POST", F, fwd(weights=tensor([1.0, 1.0])), "weights", U),
    Case("fwd-targets-float", "POST", F, fwd(target_tokens=tensor([1.0, 2.0, 3.0])), "target_tokens", U),
    Case("fwd-targets-missing", "POST", F, fwd(target_tokens=None), "target_tokens", U),
    Case("fwd-targets-outside-vocab", "POST", F, fwd(target_tokens=tensor([1, 2, 1 << 40], pb.DTYPE_INT64)), "target_tokens", U),
    Case("fwd-token-outside-vocab", "POST", F, fwd(tokens=[1, 2, 1 << 30]), "model_input", U),
    Case("fwd-token-negative", "POST", F, fwd(tokens=[1, -2, 3]), "model_input", U),
    Case("fwd-no-data", "POST", F, fwd(data=False), "data", U),
    Case("fwd-unknown-loss", "POST", F, fwd(loss_fn="no_such_loss"), "loss_fn", U),
    Case("fwd-advantages-nan", "POST", F,
         fwd(loss_fn="importance_sampling", logprobs=tensor([-1.0] * 3), advantages=tensor([1.0, float("nan"), 0.0])), "advantages", U),
    Case("fwd-logprobs-inf", "POST", F,
         fwd(loss_fn="ppo", logprobs=tensor([-1.0, float("-inf"), -1.0]), advantages=tensor([1.0] * 3)), "logprobs", U),
    Case("fwd-logprobs-huge", "POST", F,
         fwd(loss_fn="ppo", logprobs=tensor([-1.0, -1e20, -1.0]), advantages=tensor([1.0] * 3)), "logprobs", U),
    Case("fwd-advantages-missing", "POST", F, fwd(loss_fn="ppo", logprobs=tensor([-1.0] * 3)), "advantages", U),
    Case("fwd-config-nan", "POST", F,
         fwd(loss_fn="ppo", logprobs=tensor([-1.0] * 3), advantages=tensor([1.0] * 3), config={"clip_low_threshold": float("nan")}),
         "loss_fn_config", U),
    Case("fwd-config-inf", "POST", F,
         fwd(loss_fn="ppo", logprobs=tensor([-1.0] * 3), advantages=tensor([1.0] * 3), config={"clip_high_threshold": float("inf")}),
         "loss_fn_config", U),
    Case("fwd-config-unknown-key", "POST", F, fwd(config={"temperature": 1.0}), "loss_fn_config", U),
    Case("fwd-config-text", "POST", F,
         fwd(loss_fn="ppo", logprobs=tensor([-1.0] * 3), advantages=tensor([1.0] * 3), text_config={"clip_low_threshold": "low"}),
         "loss_fn_config", U),
    # optim_step
    Case("adam-lr-nan", "POST", "/api/v1/optim_step",
         seq_text('{"model_id": "MODEL", "seq_id": SEQ, "adam_params": {"learning_rate": NaN}}'), "learning_rate", U),
    Case("adam-lr-inf", "POST", "/api/v1/optim_step",
         seq_text('{"model_id": "MODEL", "seq_id": SEQ, "adam_params": {"learning_rate": Infinity}}'), "learning_rate", U),
    Case("adam-lr-negative", "POST", "/api/v1/optim_step", adam(learning_rate=-1.0), "learning_rate", U),
    Case("adam-lr-1e30", "POST", "/api/v1/optim_step", adam(learning_rate=1e30), "learning_rate", U),
    Case("adam-eps-inf", "POST", "/api/v1/optim_step",
         seq_text('{"model_id": "MODEL", "seq_id": SEQ, "adam_params": {"eps": Infinity}}'), "eps", U),
    Case("adam-eps-zero", "POST", "/api/v1/optim_step", adam(eps=0.0), "eps", U),
    Case("adam-weight-decay-1e30", "POST", "/api/v1/optim_step", adam(weight_decay=1e30), "weight_decay", U),
    Case("adam-weight-decay-negative", "POST", "/api/v1/optim_step", adam(weight_decay=-0.1), "weight_decay", U),
    Case("adam-beta1-one", "POST", "/api/v1/optim_step", adam(beta1=1.0), "beta1", U),
    Case("adam-beta2-negative", "POST", "/api/v1/optim_step", adam(beta2=-0.1), "beta2", U),
    Case("adam-clip-nan", "POST", "/api/v1/optim_step",
         seq_text('{"model_id": "MODEL", "seq_id": SEQ, "adam_params": {"grad_clip_norm": NaN}}'), "grad_clip_norm", U),
    Case("adam-params-wrong-type", "POST", "/api/v1/optim_step", seq_op(adam_params="fast"), "adam_params", U),
    Case("adam-params-missing", "POST", "/api/v1/optim_step", seq_op(), "adam_params", U),
    Case("optim-seq-nan", "POST", "/api/v1/optim_step", seq_text('{"model_id": "MODEL", "seq_id": NaN}'), "seq_id"),
    Case("optim-seq-huge", "POST", "/api/v1/optim_step", lambda c: {"model_id": c.model_id, "seq_id": HUGE}, "seq_id"),
    Case("optim-no-model-id", "POST", "/api/v1/optim_step", {"seq_id": 1}, "model_id"),
    Case("optim-unknown-model", "POST", "/api/v1/optim_step", {"model_id": "sess-nope:train:0", "seq_id": 1}, "model_id", 404),
    Case("optim-body-a-list", "POST", "/api/v1/optim_step", [1, 2], "body"),
    # save_weights, save_weights_for_sampler
    Case("save-ttl-10^20", "POST", "/api/v1/save_weights", seq_op(path="ttl-huge", ttl_seconds=10**20), "ttl_seconds", U),
    Case("save-ttl-negative", "POST", "/api/v1/save_weights", seq_op(path="ttl-neg", ttl_seconds=-5), "ttl_seconds", U),
    Case("save-ttl-nan", "POST", "/api/v1/save_weights",
         seq_text('{"model_id": "MODEL", "seq_id": SEQ, "path": "x", "ttl_seconds": NaN}'), "ttl_seconds", U),
    Case("save-name-escapes", "POST", "/api/v1/save_weights", seq_op(path="../escape"), "name", U),
    Case("save-name-huge", "POST", "/api/v1/save_weights", seq_op(path="n" * 10_000), "path", U),
    Case("save-exists", "POST", "/api/v1/save_weights", seq_op(path="table-state"), "overwrite", U),
    Case("save-metadata-nan", "POST", "/api/v1/save_weights",
         seq_text('{"model_id": "MODEL", "seq_id": SEQ, "path": "m", "user_metadata": {"x": NaN}}'), "user_metadata", U),
    Case("sampler-save-nothing", "POST", "/api/v1/save_weights_for_sampler", seq_op(), "sampling_session_seq_id", U),
    Case("sampler-save-seq-huge", "POST", "/api/v1/save_weights_for_sampler", seq_op(sampling_session_seq_id=HUGE),
         "sampling_session_seq_id", U),
    Case("sampler-save-ttl-huge", "POST", "/api/v1/save_weights_for_sampler", seq_op(path="s", ttl_seconds=10**20), "ttl_seconds", U),
    # load_weights
    Case("load-not-a-path", "POST", "/api/v1/load_weights", seq_op(path="not-a-path"), "tinker://", U),
    Case("load-bad-kind", "POST", "/api/v1/load_weights", lambda c: seq_op(path=f"tinker://{c.model_id}/foo/bar")(c), "kind", U),
    Case("load-never-saved", "POST", "/api/v1/load_weights", lambda c: seq_op(path=f"tinker://{c.model_id}/weights/nope")(c), "nope", U),
    Case("load-sampler-checkpoint", "POST", "/api/v1/load_weights", lambda c: seq_op(path=c.sampler_path)(c), "sampler_weights", U),
    Case("load-other-rank", "POST", "/api/v1/load_weights", lambda c: seq_op(path=c.rank8_weights_path)(c), "rank", U),
    Case("load-other-targets", "POST", "/api/v1/load_weights", lambda c: seq_op(path=c.attn_only_weights_path)(c), "train_mlp", U),
    Case("load-optimizer-wrong-type", "POST", "/api/v1/load_weights",
         lambda c: seq_op(path=c.weights_path, optimizer=5)(c), "optimizer", U),
    Case("load-path-huge", "POST", "/api/v1/load_weights", seq_op(path="p" * 10_000), "path", U),
    Case("load-no-seq", "POST", "/api/v1/load_weights", lambda c: {"model_id": c.model_id, "path": c.weights_path}, "seq_id"),
    Case("load-create-session-nan", "POST", "/api/v1/load_weights",
         lambda c: '{"path": "%s", "session_id": NaN, "model_seq_id": 91}' % c.weights_path, "session_id"),
    Case("load-create-no-session", "POST", "/api/v1/load_weights", lambda c: {"path": c.weights_path}, "session_id"),
    Case("load-create-seq-huge", "POST", "/api/v1/load_weights",
         lambda c: {"path": c.weights_path, "session_id": c.session_id, "model_seq_id": HUGE}, "model_seq_id"),
    Case("load-create-other-base", "POST", "/api/v1/load_weights",
         lambda c: {"path": c.weights_path, "session_id": c.session_id, "model_seq_id": 91, "base_model": "Qwen/Qwen3-8B"},
         "base_model"),
    Case("load-create-no-path", "POST", "/api/v1/load_weights", lambda c: {"session_id": c.session_id, "model_seq_id": 91}, "path"),
    # sampling sessions and asample
    Case("sampling-session-seq-nan", "POST", "/api/v1/create_sampling_session",
         lambda c: '{"session_id": "%s", "sampling_session_seq_id": NaN, "base_model": "%s"}' % (c.session_id, TINY),
         "sampling_session_seq_id"),
    Case("sampling-session-nothing", "POST", "/api/v1/create_sampling_session",
         lambda c: {"session_id": c.session_id, "sampling_session_seq_id": 5}, "model_path"),
    Case("sampling-session-bad-path", "POST", "/api/v1/create_sampling_session",
         lambda c: {"session_id": c.session_id, "sampling_session_seq_id": 5, "model_path": "tinker://x"}, "tinker://"),
    Case("sampling-session-unknown-base", "POST", "/api/v1/create_sampling_session",
         lambda c: {"session_id": c.session_id, "sampling_session_seq_id": 5, "base_model": "no/such-model"}, "base_model"),
    Case("sampling-session-other-base", "POST", "/api/v1/create_sampling_session",
         lambda c: {"session_id": c.session_id, "sampling_session_seq_id": 5, "model_path": c.sampler_path, "base_model": "Qwen/Qwen3-8B"},
         "base_model"),
    Case("get-sampler-unknown", "GET", "/api/v1/samplers/sess-nope:sample:0", None, "sampling_session_id", 404),
    Case("sample-temperature-nan", "POST", "/api/v1/asample", sample_text('"sampling_params": {"temperature": NaN}'), "temperature"),
    Case("sample-temperature-inf", "POST", "/api/v1/asample", sample_text('"sampling_params": {"temperature": Infinity}'), "temperature"),
    Case("sample-temperature-negative", "POST", "/api/v1/asample", sample(temperature=-1.0), "temperature"),
    Case("sample-temperature-1e-30", "POST", "/api/v1/asample", sample(temperature=1e-30), "temperature"),
    Case("sample-top-p-zero", "POST", "/api/v1/asample", sample(top_p=0.0), "top_p"),
    Case("sample-top-p-two", "POST", "/api/v1/asample", sample(top_p=2.0), "top_p"),
    Case("sample-top-p-nan", "POST", "/api/v1/asample", sample_text('"sampling_params": {"top_p": NaN}'), "top_p"),
    Case("sample-top-k-zero", "POST", "/api/v1/asample", sample(top_k=0), "top_k"),
    Case("sample-top-k-negative", "POST", "/api/v1/asample", sample(top_k=-7), "top_k"),
    Case("sample-top-k-huge", "POST", "/api/v1/asample", sample(top_k=HUGE), "top_k"),
    Case("sample-max-tokens-zero", "POST", "/api/v1/asample", sample(max_tokens=0), "max_tokens"),
    Case("sample-max-tokens-huge", "POST", "/api/v1/asample", sample(max_tokens=HUGE), "max_tokens"),
    Case("sample-max-tokens-over-context", "POST", "/api/v1/asample", sample(max_tokens=10**6), "max_tokens"),
    Case("sample-max-tokens-nan", "POST", "/api/v1/asample", sample_text('"sampling_params": {"max_tokens": NaN}'), "max_tokens"),
    Case("sample-seed-2^63", "POST", "/api/v1/asample", sample(seed=INT64_END), "seed"),
    Case("sample-seed-negative", "POST", "/api/v1/asample", sample(seed=-1), "seed"),
    Case("sample-num-samples-zero", "POST", "/api/v1/asample", sample(num_samples=0), "num_samples"),
    Case("sample-num-samples-negative", "POST", "/api/v1/asample", sample(num_samples=-3), "num_samples"),
    Case("sample-num-samples-huge", "POST", "/api/v1/asample", sample(num_samples=HUGE), "num_samples"),
    Case("sample-topk-prompt-logprobs-huge", "POST", "/api/v1/asample", sample(topk_prompt_logprobs=10**6), "topk_prompt_logprobs"),
    Case("sample-topk-sample-logprobs", "POST", "/api/v1/asample", sample(topk_sample_logprobs=3), "topk_sample_logprobs"),
    Case("sample-prompt-missing", "POST", "/api/v1/asample",
         lambda c: {"sampling_session_id": c.sampling_session_id, "seq_id": 0}, "prompt"),
    Case("sample-prompt-outside-vocab", "POST", "/api/v1/asample",
         sample(prompt={"chunks": [{"type": "encoded_text", "tokens": [1, 1 << 40]}]}), "prompt"),
    Case("sample-prompt-not-ints", "POST", "/api/v1/asample",
         sample(prompt={"chunks": [{"type": "encoded_text", "tokens": ["a"]}]}), "prompt"),
    Case("sample-prompt-huge", "POST", "/api/v1/asample",
         sample(prompt={"chunks": [{"type": "encoded_text", "tokens": [5] * 100_000}]}), "prompt"),
    Case("sample-prompt-image", "POST", "/api/v1/asample", sample(prompt={"chunks": [{"type": "image", "data": "x"}]}), "prompt"),
    Case("sample-stop-wrong-type", "POST", "/api/v1/asample", sample(stop={"a": 1}), "stop"),
    Case("sample-stop-outside-vocab", "POST", "/api/v1/asample", sample(stop=[1 << 40]), "stop"),
    Case("sample-stop-too-many", "POST", "/api/v1/asample", sample(stop=["x"] * 10_000), "stop"),
    Case("sample-seq-nan", "POST", "/api/v1/asample",
         lambda c: '{"sampling_session_id": "%s", "seq_id": NaN, "prompt": {"chunks": []}}' % c.sampling_session_id, "seq_id"),
    Case("sample-no-session", "POST", "/api/v1/asample",
         {"seq_id": 0, "prompt": {"chunks": [{"type": "encoded_text", "tokens": [1]}]}}, "sampling_session_id"),
    Case("sample-unknown-session", "POST", "/api/v1/asample",
         {"sampling_session_id": "sess-nope:sample:0", "seq_id": 0, "prompt": {"chunks": []}}, "sampling_session_id", 404),
    # retrieve_future
    Case("future-unknown", "POST", "/api/v1/retrieve_future", {"request_id": "req-never-issued"}, "request_id", 404),
    Case("future-nan", "POST", "/api/v1/retrieve_future", '{"request_id": NaN}', "request_id"),
    Case("future-missing", "POST", "/api/v1/retrieve_future", {}, "request_id"),
    Case("future-huge", "POST", "/api/v1/retrieve_future", {"request_id": "r" * 100_000}, "request_id"),
    # the RestClient's routes
    Case("runs-offset-huge", "GET", "/api/v1/training_runs", None, "offset", params={"offset": str(HUGE)}),
    Case("runs-limit-huge", "GET", "/api/v1/training_runs", None, "limit", params={"limit": str(HUGE)}),
    Case("runs-offset-negative", "GET", "/api/v1/training_runs", None, "offset", params={"offset": "-1"}),
    Case("runs-limit-zero", "GET", "/api/v1/training_runs", None, "limit", params={"limit": "0"}),
    Case("runs-limit-text", "GET", "/api/v1/training_runs", None, "limit", params={"limit": "many"}),
    Case("runs-limit-nan", "GET", "/api/v1/training_runs", None, "limit", params={"limit": "nan"}),
    Case("checkpoints-offset-huge", "GET", "/api/v1/checkpoints", None, "offset", params={"offset": str(HUGE)}),
    Case("checkpoints-limit-negative", "GET", "/api/v1/checkpoints", None, "limit", params={"limit": "-5"}),
    Case("run-unknown", "GET", "/api/v1/training_runs/sess-nope:train:0", None, "model_id", 404),
    Case("run-checkpoints-unknown", "GET", "/api/v1/training_runs/sess-nope:train:0/checkpoints", None, "model_id", 404),
    Case("delete-checkpoint-unknown", "DELETE", "/api/v1/training_runs/{model_id}/checkpoints/weights/nope", None, "nope", 404),
    Case("delete-checkpoint-bad-kind", "DELETE", "/api/v1/training_runs/{model_id}/checkpoints/foo/bar", None, "kind"),
    Case("delete-checkpoint-other-run", "DELETE", "/api/v1/training_runs/sess-nope:train:0/checkpoints/weights/x", None, "model_id", 404),
    Case("publish-unknown", "POST", "/api/v1/training_runs/{model_id}/checkpoints/weights/nope/publish", None, "nope", 404),
    Case("unpublish-unknown", "DELETE", "/api/v1/training_runs/{model_id}/checkpoints/weights/nope/publish", None, "nope", 404),
    Case("ttl-10^20", "PUT", "/api/v1/training_runs/{model_id}/checkpoints/weights/table-state/ttl", {"ttl_seconds": 10**20}, "ttl_seconds"),
    Case("ttl-negative", "PUT", "/api/v1/training_runs/{model_id}/checkpoints/weights/table-state/ttl", {"ttl_seconds": -5}, "ttl_seconds"),
    Case("ttl-nan", "PUT", "/api/v1/training_runs/{model_id}/checkpoints/weights/table-state/ttl", '{"ttl_seconds": NaN}', "ttl_seconds"),
    Case("ttl-text", "PUT", "/api/v1/training_runs/{model_id}/checkpoints/weights/table-state/ttl", {"ttl_seconds": "soon"}, "ttl_seconds"),
    Case("weights-info-not-a-path", "POST", "/api/v1/weights_info", {"tinker_path": "nonsense"}, "tinker://"),
    Case("weights-info-nan", "POST", "/api/v1/weights_info", '{"tinker_path": NaN}', "tinker_path"),
    Case("weights-info-missing", "POST", "/api/v1/weights_info", {}, "tinker_path"),
    # the console's JSON (gateway/routes/console_api.py)
    Case("console-me-bad-key", "GET", "/console/api/me", None, "X-API-Key", 401, headers={"X-API-Key": "tml-a b"}),
    Case("console-server-no-key", "GET", "/console/api/server", None, "X-API-Key", 401, headers={"X-API-Key": ""}),
    Case("console-runs-limit-zero", "GET", "/console/api/runs", None, "limit", params={"limit": "0"}),
    Case("console-runs-offset-huge", "GET", "/console/api/runs", None, "offset", params={"offset": str(HUGE)}),
    Case("console-runs-limit-nan", "GET", "/console/api/runs", None, "limit", params={"limit": "nan"}),
    Case("console-run-unknown", "GET", "/console/api/runs/sess-nope:train:0", None, "model_id", 404),
    Case("console-run-id-huge", "GET", "/console/api/runs/" + "r" * 1000, None, "run_id"),
    Case("console-metrics-unknown", "GET", "/console/api/runs/sess-nope:train:0/metrics", None, "model_id", 404),
    Case("console-metrics-after-negative", "GET", "/console/api/runs/{model_id}/metrics", None, "after_step",
         params={"after_step": "-1"}),
    Case("console-metrics-after-huge", "GET", "/console/api/runs/{model_id}/metrics", None, "after_step",
         params={"after_step": str(INT64_END)}),
    Case("console-metrics-limit-text", "GET", "/console/api/runs/{model_id}/metrics", None, "limit", params={"limit": "all"}),
    Case("console-published-limit-negative", "GET", "/console/api/published", None, "limit", params={"limit": "-1"}),
    Case("weights-info-unknown", "POST", "/api/v1/weights_info", lambda c: {"tinker_path": f"tinker://{c.model_id}/weights/nope"}, "nope", 404),
    # the OpenAI routes (message or param names the field)
    Case("v1-chat-temperature-nan", "POST", "/v1/chat/completions",
         '{"model": "anvil/tiny-qwen3", "messages": [{"role": "user", "content": "Hi"}], "temperature": NaN}', "temperature"),
    Case("v1-chat-temperature-tiny", "POST", "/v1/chat/completions", chat(temperature=1e-30), "temperature"),
    Case("v1-chat-seed-2^63", "POST", "/v1/chat/completions", chat(seed=INT64_END), "seed"),
    Case("v1-chat-seed-negative", "POST", "/v1/chat/completions", chat(seed=-1), "seed"),
    Case("v1-chat-n-zero", "POST", "/v1/chat/completions", chat(n=0), "n"),
    Case("v1-chat-n-huge", "POST", "/v1/chat/completions", chat(n=HUGE), "n"),
    Case("v1-chat-max-tokens-huge", "POST", "/v1/chat/completions", chat(max_tokens=HUGE), "max_tokens"),
    Case("v1-chat-max-tokens-zero", "POST", "/v1/chat/completions", chat(max_tokens=0), "max_tokens"),
    Case("v1-chat-top-p-nan", "POST", "/v1/chat/completions",
         '{"model": "anvil/tiny-qwen3", "messages": [{"role": "user", "content": "Hi"}], "top_p": NaN}', "top_p"),
    Case("v1-chat-messages-wrong-type", "POST", "/v1/chat/completions", chat(messages="hello"), "messages"),
    Case("v1-chat-missing-messages", "POST", "/v1/chat/completions", {"model": TINY}, "messages"),
    Case("v1-chat-unknown-model", "POST", "/v1/chat/completions", chat(model="no/such-model"), "model", 404),
    Case("v1-chat-bad-tinker-path", "POST", "/v1/chat/completions", chat(model="tinker://nonsense"), "model", 404),
    Case("v1-completion-prompt-outside-vocab", "POST", "/v1/completions", completion(prompt=[1, 1 << 40]), "prompt"),
    Case("v1-completion-logprobs-nan", "POST", "/v1/completions",
         '{"model": "anvil/tiny-qwen3", "prompt": "Hi", "logprobs": NaN}', "logprobs"),
    Case("v1-completion-top-k-zero", "POST", "/v1/completions", completion(top_k=0), "top_k"),
    Case("v1-completion-empty-prompt", "POST", "/v1/completions", completion(prompt=[]), "prompt"),
    Case("v1-completion-huge-prompt", "POST", "/v1/completions", completion(prompt=[5] * 100_000), "prompt"),
    Case("v1-completion-not-json", "POST", "/v1/completions", "{nope", "JSON"),
    Case("v1-model-unknown", "GET", "/v1/models/no/such-model", None, "model", 404),
]


def _send(c: Ctx, case: Case) -> httpx.Response:
    body = case.body(c) if callable(case.body) else case.body
    route = case.route.format(model_id=c.model_id, session_id=c.session_id, sampling_session_id=c.sampling_session_id)
    headers = dict(case.headers)
    if route.startswith("/v1"):
        headers.setdefault("Authorization", f"Bearer {API_KEY}")
    kwargs: dict = {"params": case.params, "headers": headers}
    if isinstance(body, bytes):
        kwargs["content"] = body
        headers.setdefault("Content-Type", PROTOBUF["Content-Type"])
    elif isinstance(body, str):
        kwargs["content"] = body.encode()
        headers.setdefault("Content-Type", "application/json")
    elif body is not None:
        kwargs["json"] = body
    return c.http.request(case.method, route, **kwargs)


def _message(response: httpx.Response) -> str:
    body = response.json()
    if "error" in body and isinstance(body["error"], dict):  # the OpenAI shape
        return f"{body['error']['message']} (param {body['error']['param']})"
    return str(body["detail"])


def _still_trains(c: Ctx) -> None:
    """One cheap real request: a forward_backward on the table's model."""
    response = c.post(F, content=fwd()(c), headers=PROTOBUF)
    assert response.status_code == 200, response.text
    result = c.result(response.json()["request_id"])
    c.seq += 1
    assert isinstance(result, bytes), result
    output = pb.ForwardBackwardOutput.FromString(result)
    assert output.metrics["loss:sum"] > 0


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input(ctx, case):
    response = _send(ctx, case)
    if case.status is None:
        assert response.status_code == 200, response.text
        ctx.seq += 1  # the failed request kept its place in the model's queue
        result = ctx.result(response.json()["request_id"])
        assert isinstance(result, dict) and result.get("category") == "user", result
        message = result["error"]
    else:
        assert response.status_code == case.status, response.text
        message = _message(response)
    assert case.field in message, message
    _still_trains(ctx)


def test_the_table_covers_every_route_that_takes_input():
    from gateway.app import create_app
    from gateway.service import Settings

    # routes whose answer depends on no input of the caller's
    without_input = {
        ("GET", "/api/v1/healthz"), ("POST", "/api/v1/client/config"), ("POST", "/api/v1/client/dynamic_config"),
        ("POST", "/api/v1/telemetry"), ("GET", "/api/v1/get_server_capabilities"), ("POST", "/api/v1/cancel_future"),
        ("GET", "/api/v1/sessions"), ("GET", "/metrics"), ("GET", "/models"),
    }
    app = create_app(Settings(data_dir=None))
    openai_app = next(route.app for route in app.routes if getattr(route, "path", "") == "/v1")

    def routes(of):
        return [(method, route) for route in of.routes if hasattr(route, "methods") and route.include_in_schema
                for method in route.methods if method != "HEAD"]

    def covered(method: str, route, prefix: str) -> bool:
        return any(
            case.method == method and case.route.startswith(prefix) and route.path_regex.match(case.route[len(prefix):])
            for case in CASES
        )

    uncovered = [
        f"{method} {prefix}{route.path}"
        for of, prefix in ((app, ""), (openai_app, "/v1"))
        for method, route in routes(of)
        if (method, (prefix and route.path) or route.path) not in without_input and not covered(method, route, prefix)
    ]
    assert not uncovered


def test_unpublish_is_not_taken_for_a_delete(service_client, rest_client):
    """DELETE .../checkpoints/weights/x/publish once reached delete_checkpoint, which refused
    "weights/x/publish" as a name: the table found it."""
    from sdk_helpers import new_trainer

    trainer = new_trainer(service_client, rank=4, seed=5)
    path = trainer.save_weights_for_sampler("published-then-not").result().path
    rest_client.publish_checkpoint_from_tinker_path(path).result()
    assert rest_client.get_weights_info_by_tinker_path(path).result().base_model == TINY
    rest_client.unpublish_checkpoint_from_tinker_path(path).result()
    listed = rest_client.list_checkpoints(trainer.model_id).result().checkpoints
    assert [c.public for c in listed if c.tinker_path == path] == [False]
    # a checkpoint named "publish" is still deleted, not unpublished
    named_publish = trainer.save_weights_for_sampler("publish").result().path
    rest_client.delete_checkpoint_from_tinker_path(named_publish).result()
    listed = rest_client.list_checkpoints(trainer.model_id).result().checkpoints
    assert named_publish not in [c.tinker_path for c in listed] and path in [c.tinker_path for c in listed]


# the same mistakes made through the SDK, where it sends them unchecked (it refuses a NaN or an
# infinity in a JSON body itself, but sends them in AdamParams and in protobuf tensors)


def _sdk_cases():
    import tinker
    from tinker import types

    from sdk_helpers import sft_datum

    nan_weights = sft_datum([1, 2, 3, 4], weights=[1.0, float("nan"), 1.0])
    prompt = types.ModelInput.from_ints([1, 2, 3])
    return [
        ("adam-lr-inf", lambda t, s: t.optim_step(types.AdamParams(learning_rate=float("inf"))).result(),
         tinker.RequestFailedError, "learning_rate"),
        ("adam-eps-inf", lambda t, s: t.optim_step(types.AdamParams(eps=float("inf"))).result(),
         tinker.RequestFailedError, "eps"),
        ("adam-weight-decay-1e30", lambda t, s: t.optim_step(types.AdamParams(weight_decay=1e30)).result(),
         tinker.RequestFailedError, "weight_decay"),
        ("weights-nan", lambda t, s: t.forward_backward([nan_weights], "cross_entropy").result(),
         tinker.RequestFailedError, "weights"),
        ("save-ttl-10^20", lambda t, s: t.save_state("sdk-ttl", ttl_seconds=10**20).result(),
         tinker.RequestFailedError, "ttl_seconds"),
        ("sample-seed-2^63", lambda t, s: s.sample(prompt, 1, types.SamplingParams(max_tokens=2, seed=2**63)).result(),
         tinker.BadRequestError, "seed"),
        ("sample-top-p-zero", lambda t, s: s.sample(prompt, 1, types.SamplingParams(max_tokens=2, top_p=0.0)).result(),
         tinker.BadRequestError, "top_p"),
        ("sample-max-tokens-over-context", lambda t, s: s.sample(prompt, 1, types.SamplingParams(max_tokens=10**6)).result(),
         tinker.BadRequestError, "max_tokens"),
        ("sample-num-samples-zero", lambda t, s: s.sample(prompt, 0, types.SamplingParams(max_tokens=2)).result(),
         tinker.BadRequestError, "num_samples"),
    ]


SDK_CASES = _sdk_cases()


@pytest.fixture(scope="module")
def sdk_pair(service_client):
    from sdk_helpers import new_trainer

    trainer = new_trainer(service_client, rank=4, seed=6)
    return trainer, trainer.save_weights_and_get_sampling_client().result()


@pytest.mark.parametrize("name, call, error, field", SDK_CASES, ids=[case[0] for case in SDK_CASES])
def test_bad_input_through_the_sdk(sdk_pair, tokenizer, name, call, error, field):
    import tinker

    from sdk_helpers import sft_datum

    trainer, sampler = sdk_pair
    with pytest.raises(error) as caught:
        call(trainer, sampler)
    assert field in str(caught.value)
    if isinstance(caught.value, tinker.RequestFailedError):
        assert caught.value.category == "user"
    assert trainer.forward_backward([sft_datum(tokenizer.encode("Still here."))], "cross_entropy").result().metrics["loss:sum"] > 0
