"""The console's pages and their script and style: static files shipped inside the package
(gateway/console/), so nothing is built by the user and nothing is fetched from elsewhere."""

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

ASSETS = Path(__file__).resolve().parent.parent / "console"
# the pages load only their own script and style; no inline script runs, nothing from elsewhere
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}

router = APIRouter(prefix="/console", include_in_schema=False)


def _page(name: str):
    async def page() -> FileResponse:
        return FileResponse(ASSETS / name, media_type="text/html", headers=HEADERS)

    return page


router.add_api_route("", _page("runs.html"), methods=["GET"])
router.add_api_route("/run", _page("run.html"), methods=["GET"])
router.add_api_route("/server", _page("server.html"), methods=["GET"])


def mount_console(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/console/static", StaticFiles(directory=ASSETS), name="console-static")
