"""`anvil serve`: run the server with the embedded default (SQLite + local disk, no other service)."""

import argparse
import logging
import os
from pathlib import Path

import uvicorn

from anvil.base_models import parse_model_flag
from gateway.app import create_app
from gateway.service import Settings

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
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    try:
        models = dict(parse_model_flag(flag) for flag in args.model)
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings(data_dir=args.data_dir.expanduser().resolve(), models=models)
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
