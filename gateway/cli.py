"""`anvil serve`: run the server with the embedded default (SQLite + local disk, no other service);
`anvil keys`: the users' API keys, in the same store."""

import argparse
import logging
import os
from pathlib import Path

from gateway.keys_cli import add_keys_commands, is_loopback, refuse_without_keys, run_keys_command, store_arguments
from gateway.quotas import TRAIN_PIECE_TOKENS, Limits

DEFAULT_DATA_DIR = Path(os.environ.get("ANVIL_DATA_DIR", "~/.anvil")).expanduser()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="anvil", description="Self-hosted training API for the tinker SDK")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the server")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    serve.add_argument("--port", type=int, default=8000)
    store_arguments(serve, DEFAULT_DATA_DIR)
    access = serve.add_mutually_exclusive_group()
    access.add_argument(
        "--require-keys", action="store_true",
        help="accept only keys made with `anvil keys create` (the default on a non-loopback --host)",
    )
    access.add_argument(
        "--open", action="store_true",
        help="open mode on any --host: every well-formed tml- key is a user of its own (the default on loopback)",
    )
    serve.add_argument(
        "--model", action="append", default=[], metavar="NAME=PATH",
        help="serve the local Hugging Face model folder PATH under NAME (repeatable)",
    )
    serve.add_argument(
        "--tokenizer", action="append", default=[], metavar="NAME=ID",
        help="the tokenizer_id clients get for model NAME (a hub name or a path on the clients' machines; repeatable). "
        "Default: NAME for models served under a hub name (org/name), else the model's folder on this server",
    )
    serve.add_argument(
        "--session-timeout-s", type=_seconds, default=300.0, metavar="S",
        help="a session without a heartbeat for S seconds ends and its models are unloaded (default 300; "
        "the SDK sends one every 10 s)",
    )
    serve.add_argument(
        "--long-poll-s", type=_seconds, default=25.0, metavar="S",
        help="how long retrieve_future holds a poll open (default 25; keep it below the SDK's 45 s read timeout)",
    )
    limits = Limits()
    serve.add_argument(
        "--max-train-tokens", type=_positive, default=limits.max_train_tokens, metavar="N",
        help="tokens one forward_backward may hold, all datums together (default %(default)s)",
    )
    serve.add_argument(
        "--max-sample-tokens", type=_positive, default=limits.max_sample_tokens, metavar="N",
        help="num_samples × max_tokens one sampling request may ask for (default %(default)s)",
    )
    serve.add_argument(
        "--max-models-per-user", type=_positive, default=limits.max_models_per_user, metavar="N",
        help="training models one user may have loaded at once (default %(default)s)",
    )
    serve.add_argument(
        "--train-piece-tokens", type=_positive, default=TRAIN_PIECE_TOKENS, metavar="N",
        help="a forward_backward over N tokens runs as pieces of at most N, other users' work joining "
        "between them (exact: gradients accumulate; default %(default)s)",
    )
    serve.add_argument(
        "--max-body-bytes", type=_positive, default=limits.max_body_bytes, metavar="N",
        help="size of a request body after decompression (default %(default)s)",
    )
    serve.add_argument(
        "--sampler-engine", choices=["auto", "vllm", "torch"], default="auto",
        help="sampling engine: vllm, the in-process torch engine, or auto (vllm where it imports; default)",
    )
    serve.add_argument("--samplers", type=_positive, default=1, metavar="N", help="sampling engines per base model (default 1)")
    serve.add_argument(
        "--vllm-adapters", choices=["auto", "hot-swap", "lora"], default="auto",
        help="how vLLM engines serve adapters: hot-swap (one merged into the weights at a time), "
        "lora (vLLM's multi-LoRA path), auto (hot-swap on a CPU, lora on CUDA; default)",
    )
    serve.add_argument(
        "--lora-slots", type=_positive, default=8, metavar="N",
        help="adapters a lora-mode vLLM engine keeps loaded at once (default 8)",
    )
    serve.add_argument(
        "--precision", default=os.environ.get("ANVIL_PRECISION", "auto"),
        help="dtype of the frozen base weights in the trainer and the sampling engines: bf16, fp32, or auto "
        "(bf16 where the device multiplies it fast: CUDA, CPUs with AVX-512 BF16 or AMX; default). "
        "LoRA weights, optimizer state and losses are float32 either way",
    )
    cluster = serve.add_argument_group("Ray cluster (docs/scaling.md)")
    cluster.add_argument(
        "--cluster", metavar="ADDRESS",
        help="run trainer workers and sampler engines as Ray actors: `ray` starts a local Ray runtime, "
        "`auto` or `ray://HOST:PORT` joins a running cluster (default: no Ray, one process tree)",
    )
    cluster.add_argument("--trainer-gpus", type=_gpus, default=0.0, metavar="N", help="GPUs each trainer actor reserves (default 0)")
    cluster.add_argument("--sampler-gpus", type=_gpus, default=0.0, metavar="N", help="GPUs each sampler actor reserves (default 0)")
    cluster.add_argument(
        "--trainer-shards", type=_positive, default=None, metavar="N",
        help="actors each trainer worker spans, the base model's decoder layers sharded over them with FSDP2, for "
        "a base model that does not fit one device (default 1; per base model: `shards` in --placement)",
    )
    cluster.add_argument(
        "--placement", type=Path, metavar="FILE",
        help="YAML or JSON: per base model, how many trainer workers and sampler engines (default: one trainer "
        "worker for all base models, --samplers engines each)",
    )
    cluster.add_argument("--vllm-tensor-parallel", type=_positive, default=1, metavar="N", help="vLLM tensor parallel size per engine")
    cluster.add_argument("--vllm-data-parallel", type=_positive, default=1, metavar="N", help="vLLM data parallel size per engine")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    add_keys_commands(commands, DEFAULT_DATA_DIR)
    args = parser.parse_args(argv)
    if args.command == "keys":
        run_keys_command(args)
    else:
        _serve(args, serve)


def _serve(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    # imported here: `anvil keys` needs none of torch, transformers or the server
    import uvicorn

    from anvil.base_models import parse_model_flag
    from anvil.device import PRECISIONS, resolved_precision, set_precision
    from gateway.app import create_app
    from gateway.service import Settings
    from gateway.store import database_url
    from sampler.fleet import FleetConfig

    if args.precision not in PRECISIONS:
        parser.error(f"--precision must be one of {', '.join(PRECISIONS)}, got {args.precision!r}")
    try:
        models = dict(parse_model_flag(flag) for flag in args.model)
        tokenizers = dict(_name_value(flag, "--tokenizer") for flag in args.tokenizer)
    except ValueError as exc:
        parser.error(str(exc))
    require_keys = args.require_keys or not (args.open or is_loopback(args.host))
    data_dir = args.data_dir.expanduser().resolve()
    if require_keys and not is_loopback(args.host):
        refuse_without_keys(parser, database_url(data_dir, args.database_url), args.host)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    set_precision(args.precision)
    logging.getLogger("anvil").info("precision: %s (--precision %s)", resolved_precision(), args.precision)
    vllm_parallel = {
        name: size
        for name, size in (("tensor_parallel_size", args.vllm_tensor_parallel), ("data_parallel_size", args.vllm_data_parallel))
        if size > 1
    }
    sampling = FleetConfig(
        engine=args.sampler_engine, samplers=args.samplers, vllm_adapters=args.vllm_adapters, lora_slots=args.lora_slots,
        vllm_parallel=vllm_parallel,
    )
    cluster = _cluster_settings(args, parser)
    settings = Settings(
        data_dir=data_dir, models=models, tokenizers=tokenizers, sampling=sampling, database_url=args.database_url,
        require_keys=require_keys, session_timeout_s=args.session_timeout_s, long_poll_s=args.long_poll_s,
        limits=Limits(args.max_train_tokens, args.max_sample_tokens, args.max_models_per_user, args.max_body_bytes),
        train_piece_tokens=args.train_piece_tokens, cluster=cluster,
    )
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level=args.log_level)


def _cluster_settings(args: argparse.Namespace, parser: argparse.ArgumentParser):
    """The Ray settings of --cluster and its flags; None without --cluster (no Ray at all)."""
    cluster_only = [flag for flag, given in (("--trainer-gpus", args.trainer_gpus), ("--sampler-gpus", args.sampler_gpus),
                                             ("--trainer-shards", args.trainer_shards), ("--placement", args.placement))
                    if given]
    if args.cluster is None:
        if cluster_only:
            parser.error(f"{', '.join(cluster_only)} need --cluster")
        return None
    from anvil.placement import GroupPlacement, Placement, PlacementError, load_placement
    from anvil.ray_cluster import ClusterSettings

    if args.cluster not in ("ray", "auto") and not args.cluster.startswith("ray://"):
        parser.error(f"--cluster must be ray, auto or ray://HOST:PORT, got {args.cluster!r}")
    if args.placement is not None and args.trainer_shards is not None:
        parser.error("--trainer-shards: with --placement, give each group's `shards` in the placement file")
    try:
        placement = (
            load_placement(args.placement)
            if args.placement is not None
            else Placement(default=GroupPlacement(trainers=1, samplers=args.samplers, shards=args.trainer_shards or 1))
        )
    except PlacementError as exc:
        parser.error(str(exc))
    return ClusterSettings(
        address=args.cluster, trainer_gpus=args.trainer_gpus, sampler_gpus=args.sampler_gpus, placement=placement
    )


def _gpus(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1024:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1024, got {text}")
    return value


def _name_value(flag: str, option: str) -> tuple[str, str]:
    name, sep, value = flag.partition("=")
    if not sep or not name or not value:
        raise ValueError(f"{option} expects NAME=VALUE, got {flag!r}")
    return name, value


def _seconds(text: str) -> float:
    value = float(text)
    if not 0.1 <= value <= 86_400 * 365:
        raise argparse.ArgumentTypeError(f"must be between 0.1 and a year in seconds, got {text}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


# vLLM engines start worker processes that re-import the main module: only run when executed
if __name__ == "__main__":
    main()
