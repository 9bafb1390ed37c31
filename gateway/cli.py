"""`anvil serve`: run the server with the embedded default (SQLite + local disk, no other service)."""

import argparse
import logging
import os
from pathlib import Path

import uvicorn

from anvil.base_models import parse_model_flag
from anvil.device import PRECISIONS, resolved_precision, set_precision
from gateway.app import create_app
from gateway.service import Settings
from sampler.fleet import FleetConfig

DEFAULT_DATA_DIR = Path(os.environ.get("ANVIL_DATA_DIR", "~/.anvil")).expanduser()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="anvil", description="Self-hosted training API for the tinker SDK")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="metadata and checkpoints (default: %(default)s)")
    serve.add_argument(
        "--model", action="append", default=[], metavar="NAME=PATH",
        help="serve the local Hugging Face model folder PATH under NAME (repeatable)",
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
        "--precision", choices=PRECISIONS, default=os.environ.get("ANVIL_PRECISION", "auto"),
        help="dtype of the frozen base weights in the trainer and the sampling engines: bf16, fp32, or auto "
        "(bf16 where the device multiplies it fast: CUDA, CPUs with AVX-512 BF16 or AMX; default). "
        "LoRA weights, optimizer state and losses are float32 either way",
    )
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    try:
        models = dict(parse_model_flag(flag) for flag in args.model)
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    set_precision(args.precision)
    logging.getLogger("anvil").info("precision: %s (--precision %s)", resolved_precision(), args.precision)
    sampling = FleetConfig(
        engine=args.sampler_engine, samplers=args.samplers, vllm_adapters=args.vllm_adapters, lora_slots=args.lora_slots
    )
    settings = Settings(data_dir=args.data_dir.expanduser().resolve(), models=models, sampling=sampling)
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level=args.log_level)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


# vLLM engines start worker processes that re-import the main module: only run when executed
if __name__ == "__main__":
    main()
