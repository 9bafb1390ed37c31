"""The console's pages and their script and style: files shipped inside the package
(gateway/console/), so nothing is built by the user and nothing is fetched from elsewhere.

The pages are Jinja2 templates sharing one layout (the header and the sign-in form); they carry
no user data, which the pages' scripts read from the console's JSON routes."""

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

CONSOLE = Path(__file__).resolve().parent.parent / "console"
PAGES = CONSOLE / "pages"
STATIC = CONSOLE / "static"
# the pages load only their own script and style; no inline script runs, nothing from elsewhere
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}

router = APIRouter(prefix="/console", include_in_schema=False)
templates = Jinja2Templates(directory=PAGES)


def _page(name: str):
    async def page(request: Request) -> HTMLResponse:
        return templates.TemplateResponse(request, f"{name}.html", {"page": name}, headers=HEADERS)

    return page


router.add_api_route("", _page("runs"), methods=["GET"])
router.add_api_route("/run", _page("run"), methods=["GET"])
router.add_api_route("/server", _page("server"), methods=["GET"])


def mount_console(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/console/static", StaticFiles(directory=STATIC), name="console-static")
