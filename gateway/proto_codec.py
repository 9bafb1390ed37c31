"""The protobuf side of the wire: forward_backward requests in, fwd/bwd and sample results out.

The schema is the SDK's own generated module, so it cannot drift from what the client sends.
"""

import numpy as np
import zstandard
from tinker.proto import tinker_public_pb2 as pb

from anvil.types import MAX_TOPK_PROMPT_LOGPROBS, ForwardBackwardResult, SampleResult
from gateway.errors import UserError
from gateway.wire import MAX_ID_CHARS

_NUMPY_DTYPE = {pb.DTYPE_FLOAT32: np.float32, pb.DTYPE_INT64: np.int64, pb.DTYPE_INT32: np.int32}
# the widest (N, K) loss input: as many columns as the widest top-k the sampler returns per token
MAX_COLUMNS = MAX_TOPK_PROMPT_LOGPROBS


def parse_forward_backward(body: bytes, content_encoding: str | None, max_bytes: int) -> pb.ForwardBackwardRequest:
    """`max_bytes` bounds the body after decompression (a 32 KB zstd frame can inflate to GiBs)."""
    if content_encoding and "zstd" in content_encoding.lower():
        body = _decompress_bounded(body, max_bytes)
    message = pb.ForwardBackwardRequest()
    try:
        message.ParseFromString(body)
    except Exception as exc:  # protobuf raises DecodeError, sometimes other errors, on garbage
        raise UserError(f"forward_backward body is not a valid ForwardBackwardRequest protobuf: {exc}") from None
    if not message.model_id:
        raise UserError(
            "forward_backward request has no model_id (is the body a ForwardBackwardRequest protobuf?)", field="model_id"
        )
    if len(message.model_id) > MAX_ID_CHARS:
        raise UserError(f"model_id must be at most {MAX_ID_CHARS} characters", field="model_id")
    return message


def _decompress_bounded(body: bytes, max_bytes: int) -> bytes:
    out = bytearray()
    try:
        # streamed, so a frame that does not declare its size cannot allocate more than the bound
        reader = zstandard.ZstdDecompressor().stream_reader(body)
        while chunk := reader.read(1 << 20):
            out += chunk
            if len(out) > max_bytes:
                raise UserError(
                    f"forward_backward body decompresses to more than {max_bytes} bytes "
                    "(anvil serve --max-body-bytes)", field="body",
                )
    except zstandard.ZstdError as exc:
        raise UserError(f"forward_backward body is not a valid zstd frame: {exc}") from None
    return bytes(out)


def datum_length(datum: pb.Datum) -> int:
    """Tokens of a datum's model input, read from the chunk sizes without decoding them."""
    return sum(len(c.encoded_text.tokens) // 4 for c in datum.model_input if c.WhichOneof("chunk") == "encoded_text")


def datum_tokens(datum: pb.Datum, where: str) -> np.ndarray:
    """The datum's model input as int64 tokens; only text chunks can be trained on."""
    pieces = []
    for j, chunk in enumerate(datum.model_input):
        kind = chunk.WhichOneof("chunk")
        if kind != "encoded_text":
            raise UserError(f"{where}.model_input.chunks[{j}] is a {kind} chunk; only encoded_text is supported")
        tokens = np.frombuffer(chunk.encoded_text.tokens, dtype="<i4")
        if tokens.size == 0:
            raise UserError(f"{where}.model_input.chunks[{j}] is empty")
        pieces.append(tokens.astype(np.int64))
    if not pieces:
        raise UserError(f"{where}.model_input is empty")
    return np.concatenate(pieces)


def tensor_to_numpy(tensor: pb.Tensor, where: str, rows: int) -> np.ndarray:
    """A loss input of a datum with `rows` input tokens. Its declared shape is checked before
    anything is allocated: a sparse tensor's shape, unlike a dense one's, is not bounded by the
    bytes sent, and a few bytes could otherwise ask for terabytes."""
    dtype = _NUMPY_DTYPE.get(tensor.dtype)
    if dtype is None:
        raise UserError(f"{where} has unsupported dtype {pb.DType.Name(tensor.dtype)}", field=where)
    shape = list(tensor.shape)
    if len(shape) > 2 or any(d < 0 for d in shape):
        raise UserError(f"{where}: shape {shape} must be (N,) or (N, K) with sizes >= 0", field=where)
    if shape and shape[0] > rows:
        raise UserError(f"{where}: shape {shape} has more rows than the datum's {rows} input tokens", field=where)
    if len(shape) == 2 and shape[1] > MAX_COLUMNS:
        raise UserError(f"{where}: shape {shape} has more than {MAX_COLUMNS} columns", field=where)
    try:
        if tensor.WhichOneof("encoding") == "sparse_csr":
            array = _csr_to_dense(tensor.sparse_csr, dtype, shape)
        else:
            array = np.frombuffer(tensor.dense, dtype=np.dtype(dtype).newbyteorder("<"))
            array = array.reshape(shape) if shape else array
    except ValueError as exc:
        raise UserError(f"{where}: data does not match its shape {shape}: {exc}", field=where) from None
    return array.astype(np.int64 if dtype == np.int32 else dtype)


def _csr_to_dense(csr: pb.SparseCsr, dtype, shape: list[int]) -> np.ndarray:
    if len(shape) != 2:
        raise ValueError("a sparse_csr tensor needs a 2-D shape")
    values = np.frombuffer(csr.values, dtype=np.dtype(dtype).newbyteorder("<"))
    crow = np.frombuffer(csr.crow_indices, dtype="<i8")
    col = np.frombuffer(csr.col_indices, dtype="<i8")
    rows, cols = shape
    if len(crow) != rows + 1 or len(col) != len(values) or (len(col) and (col.min() < 0 or col.max() >= cols)):
        raise ValueError("inconsistent CSR indices")
    dense = np.zeros(shape, dtype=dtype)
    row_of = np.repeat(np.arange(rows), np.diff(crow))
    dense[row_of, col] = values
    return dense


def loss_config(message: pb.ForwardBackwardRequest) -> dict[str, float]:
    """The loss config, from the v2 map when the client sent it (it also carries strings)."""
    if message.loss_fn_config_v2:
        config = {}
        for key, value in message.loss_fn_config_v2.items():
            if value.WhichOneof("value") != "number":
                raise UserError(f"loss_fn_config[{key!r}] must be a number, got text", field=f"loss_fn_config[{key!r}]")
            config[key] = value.number
        return config
    return dict(message.loss_fn_config)


def forward_backward_output(result: ForwardBackwardResult) -> pb.ForwardBackwardOutput:
    """One ArrayRecord per run of datums with the same trailing shape ((N,) or (N, K))."""
    output = pb.ForwardBackwardOutput(loss_fn_output_type="ArrayRecord")
    for key, value in result.metrics.items():
        output.metrics[key] = float(value)
    runs: list[list[np.ndarray]] = []
    for lp in result.logprobs:
        if runs and runs[-1][0].shape[1:] == lp.shape[1:]:
            runs[-1].append(lp)
        else:
            runs.append([lp])
    for run in runs:
        record = output.loss_fn_outputs.add(type_tag="ArrayRecord", num_datums=len(run))
        blobs = [np.ascontiguousarray(lp, dtype="<f4").tobytes() for lp in run]
        offsets = np.cumsum([0] + [len(b) for b in blobs]).astype("<i8")
        field = record.fields["logprobs"]
        field.data = b"".join(blobs)
        field.offsets = offsets.tobytes()
        field.dtype = pb.DTYPE_FLOAT32
        field.trailing_shape.extend(run[0].shape[1:])
    return output


def sample_response(result: SampleResult) -> pb.SampleResponse:
    response = pb.SampleResponse()
    for seq in result.sequences:
        response.sequences.add(
            stop_reason=pb.STOP_REASON_STOP if seq.stop_reason == "stop" else pb.STOP_REASON_LENGTH,
            tokens=np.asarray(seq.tokens, dtype="<i4").tobytes(),
            logprobs=np.asarray(seq.logprobs, dtype="<f4").tobytes(),
        )
    response.prompt_cache_hit_tokens = result.prompt_cache_hit_tokens
    if result.prompt_logprobs is not None:
        response.prompt_logprobs = np.asarray(result.prompt_logprobs, dtype="<f4").tobytes()
    if result.topk_prompt_ids is not None:
        length, k = result.topk_prompt_ids.shape
        response.topk_prompt_logprobs.token_ids = np.asarray(result.topk_prompt_ids, dtype="<i4").tobytes()
        response.topk_prompt_logprobs.logprobs = np.asarray(result.topk_prompt_logprobs, dtype="<f4").tobytes()
        response.topk_prompt_logprobs.k = k
        response.topk_prompt_logprobs.length = length
    return response
