"""The FastAPI application: routes, error handling, and the service's lifetime."""

import asyncio
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI

from gateway.checkpoint_expiry import sweep_periodically
from gateway.errors import install_error_handlers, tinker_body
from gateway.openai_app import create_openai_app, start_openai_app
from gateway.request_metrics import RequestMetrics, RequestMetricsMiddleware
from gateway.routes import console_api, futures, metrics, rest, sampling, session, training
from gateway.routes.console_pages import mount_console
from gateway.service import Service, Settings

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> FastAPI:
    openai_app = create_openai_app()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service = Service(settings, asyncio.get_running_loop())
        app.state.service = service
        start_openai_app(openai_app, service)
        service.start()
        sweeper = asyncio.create_task(sweep_periodically(service, settings.checkpoint_sweep_s))
        log.info("anvil serving %s from %s", ", ".join(service.registry.names()), settings.data_dir)
        try:
            yield
        finally:
            sweeper.cancel()
            service.stop()

    app = FastAPI(title="anvil", lifespan=lifespan)
    app.state.request_metrics = RequestMetrics()
    app.add_middleware(RequestMetricsMiddleware, metrics=app.state.request_metrics)
    for module in (session, training, sampling, futures, rest, metrics, console_api):
        app.include_router(module.router)
    app.mount("/v1", openai_app)
    mount_console(app)

    install_error_handlers(app, tinker_body)
    return app
