"""The web widget, served by the gateway: `/` (a page to try docent) and `/widget.js`.

`/widget.js` mounts a question box into any docs site (`<script src=".../widget.js"
data-api-key="..." defer>`); it loads `/widget.css` into its own shadow root, so the
host page's styles and the widget's leave each other alone. The files are plain,
hand-written and shipped as package data (services/gateway/static/): no build step.

They are read once, when this module is imported: a missing file is a packaging
mistake, and the gateway should refuse to start rather than answer 500s later.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

from fastapi import APIRouter, Request
from fastapi.responses import Response

STATIC_PACKAGE = "services.gateway"
STATIC_DIR = "static"

# The widget changes with deployments only: caches may keep it a few minutes, so a
# docs site with many readers asks the gateway for it rarely, and a fix still spreads fast.
ASSET_CACHE_CONTROL = "public, max-age=300"
# The page is a few hundred bytes: always revalidated (ETag), so it never refers to an old widget.
PAGE_CACHE_CONTROL = "no-cache"

# The page loads nothing but its own files and talks to its own gateway; the API key may
# be in its URL fragment, so nothing else gets a chance to read it.
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
)


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    media_type: str
    cache_control: str
    etag: str
    extra_headers: tuple[tuple[str, str], ...] = ()

    def response(self, request: Request) -> Response:
        headers = {
            "Cache-Control": self.cache_control,
            "ETag": self.etag,
            "X-Content-Type-Options": "nosniff",
            **dict(self.extra_headers),
        }
        cached = _etags(request.headers.get("if-none-match", ""))
        if self.etag in cached or "*" in cached:
            return Response(status_code=304, headers=headers)
        return Response(self.body, media_type=self.media_type, headers=headers)


def _etags(header: str) -> set[str]:
    """The entity tags of an If-None-Match header (weak ones compare equal, as RFC 9110 says for GET)."""
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}


def static_file(body: bytes, media_type: str, cache_control: str, **headers: str) -> StaticFile:
    """A file served with an ETag of its content; `headers` are extra ones (Content_Type → Content-Type)."""
    etag = f'"{hashlib.sha256(body).hexdigest()[:20]}"'
    extra = tuple((key.replace("_", "-"), value) for key, value in headers.items())
    return StaticFile(body, media_type, cache_control, etag, extra)


def load_static(name: str, media_type: str, cache_control: str, **headers: str) -> StaticFile:
    return static_file((resources.files(STATIC_PACKAGE) / STATIC_DIR / name).read_bytes(), media_type, cache_control, **headers)


PAGE = load_static(
    "index.html", "text/html; charset=utf-8", PAGE_CACHE_CONTROL,
    Content_Security_Policy=PAGE_CSP, Referrer_Policy="no-referrer",
)
# Docs sites isolated with Cross-Origin-Embedder-Policy load only what says it may be embedded.
SCRIPT = load_static(
    "widget.js", "text/javascript; charset=utf-8", ASSET_CACHE_CONTROL, Cross_Origin_Resource_Policy="cross-origin"
)
STYLES = load_static(
    "widget.css", "text/css; charset=utf-8", ASSET_CACHE_CONTROL, Cross_Origin_Resource_Policy="cross-origin"
)

router = APIRouter()


@router.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
async def page(request: Request) -> Response:
    return PAGE.response(request)


@router.api_route("/widget.js", methods=["GET", "HEAD"], include_in_schema=False)
async def script(request: Request) -> Response:
    return SCRIPT.response(request)


@router.api_route("/widget.css", methods=["GET", "HEAD"], include_in_schema=False)
async def styles(request: Request) -> Response:
    return STYLES.response(request)
