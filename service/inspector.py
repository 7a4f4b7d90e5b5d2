"""The reward inspector: a static page at GET /inspect, a thin client of the public API.

The page (service/static/inspect/: HTML, CSS, JavaScript and a few QA-Feedback examples) is
shipped in the package and served as it is: no build step, nothing fetched from elsewhere
(the Content-Security-Policy below lets the browser load and connect to this origin only).
Everything it shows comes from the same calls a trainer makes: /v1/score, /v1/mix,
/v1/profiles and /v1/feedback-types.

Why the page itself needs no API key: it is the same static files for everyone and holds no
data; what the key protects (the models, the profiles) stays behind /v1, and the page sends
the key the user types as `Authorization: Bearer` on each API call. A browser cannot attach
that header to a page load, so guarding the page would take a second auth scheme (cookies)
that the service does not have.

The served paths are a fixed set (`PATHS`): service.middleware counts them as known routes,
so they keep BentoML's metric labels bounded and any other /inspect/... path gets our 404.
"""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

MOUNT = "/inspect"
STATIC = Path(__file__).resolve().parent / "static" / "inspect"
ASSETS = {  # file name -> media type; the page's complete set of files
    "index.html": "text/html; charset=utf-8",
    "inspect.css": "text/css; charset=utf-8",
    "render.js": "text/javascript; charset=utf-8",
    "inspect.js": "text/javascript; charset=utf-8",
    "examples.json": "application/json",
}
PATHS = frozenset({MOUNT, MOUNT + "/", *(f"{MOUNT}/{name}" for name in ASSETS)})

HEADERS = {
    # this origin only, so the page works offline and cannot leak what is typed into it
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # small files; a restarted server's new page is picked up at once
}


def inspector_app(static: Path = STATIC) -> Starlette:
    """The page's files, read once, each at its fixed path under the mount point."""
    files = {name: (static / name).read_bytes() for name in ASSETS}

    def serve(name: str):
        async def endpoint(request: Request) -> Response:
            return Response(files[name], media_type=ASSETS[name], headers=HEADERS)

        return endpoint

    return Starlette(routes=[Route("/", serve("index.html"), methods=["GET"]),
                             *(Route(f"/{name}", serve(name), methods=["GET"]) for name in ASSETS)])
