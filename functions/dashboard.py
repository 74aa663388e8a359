"""HTTP triggers serving the web dashboard: one page and its static assets, read from `functions/static/`.

The page holds no data: its scripts read the HTTP API in the browser. Every route keeps the app's
auth level (a function key in Azure), so the page carries the key it was opened with (`?code=`) into
its asset URLs, and its scripts into every API call. Docs: docs/dashboard.md.
"""

from __future__ import annotations

import functools
import html
import re
from pathlib import Path
from string import Template
from urllib.parse import quote, urlsplit

import azure.functions as func

bp = func.Blueprint()

STATIC = Path(__file__).parent / "static"
#: What an asset may be called: a flat name, so no request can reach outside `STATIC`.
ASSET_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*\.(js|css|svg)$")
MEDIA_TYPES = {"js": "text/javascript", "css": "text/css", "svg": "image/svg+xml"}
#: Same-origin everything, no inline script: data rendered into the page can never run, or call out.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the page's URL carries the function key
    "Cache-Control": "no-cache",
}


@functools.cache
def _page() -> Template:
    return Template((STATIC / "index.html").read_text(encoding="utf-8"))


@functools.cache
def _assets() -> dict[str, bytes]:
    """Every asset, read once: a request names one of these or gets a 404."""
    return {path.name: path.read_bytes() for path in STATIC.iterdir() if ASSET_NAME.fullmatch(path.name)}


def _reply(body: str | bytes, mimetype: str, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(body, status_code=status, mimetype=mimetype, charset="utf-8", headers=SECURITY_HEADERS)


@bp.route(route="dashboard", methods=["GET"])
def dashboard_page(req: func.HttpRequest) -> func.HttpResponse:
    """The dashboard's single page; views are chosen by the URL fragment (`#/runs`, `#/runs/<id>`, ...)."""
    # Assets are named from this request's own path, whatever the host's route prefix or a trailing slash.
    base = urlsplit(req.url).path.rstrip("/") + "/"
    code = req.params.get("code", "")
    query = f"?code={quote(code, safe='')}" if code else ""
    return _reply(_page().substitute(base=html.escape(base), query=html.escape(query)), "text/html")


@bp.route(route="dashboard/{asset}", methods=["GET"])
def dashboard_asset(req: func.HttpRequest) -> func.HttpResponse:
    """A static asset of the page (script, style sheet, icon)."""
    name = str(req.route_params.get("asset", ""))
    body = _assets().get(name)
    if body is None:
        return _reply("no such asset", "text/plain", 404)
    return _reply(body, MEDIA_TYPES[name.rsplit(".", 1)[1]])
