"""The OpenAI API as an application of its own, mounted at /v1 on the server: its errors take
OpenAI's shape (gateway/openai_errors.py) while the Tinker routes keep theirs."""

import time

from fastapi import FastAPI

from gateway.openai_errors import install_openai_error_handlers
from gateway.openai_models import ModelTexts
from gateway.routes import openai
from gateway.service import Service


def create_openai_app() -> FastAPI:
    app = FastAPI(title="anvil: OpenAI API")
    app.include_router(openai.router)
    install_openai_error_handlers(app)
    return app


def start_openai_app(app: FastAPI, service: Service) -> None:
    """Give the mounted app the service (a mounted app has no lifespan of its own)."""
    app.state.service = service
    app.state.texts = ModelTexts()
    app.state.started = int(time.time())
