"""`/docs` (Swagger UI) and `/redoc`, their scripts and styles served by the gateway itself.

FastAPI's own pages load them from a CDN, so behind a firewall or offline they are blank.
The files come from the `fastapi-offline` package, read once at import (a missing file
is a packaging mistake: the gateway refuses to start rather than serve a blank page).
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, HTTPException, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response

ASSETS_PATH = "/docs-assets"
_MEDIA_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".png": "image/png"}
_CACHE_CONTROL = "public, max-age=86400"  # versioned with the package: a day is safe
_ASSETS = {
    f.name: f.read_bytes()
    for f in (resources.files("fastapi_offline") / "static").iterdir()
    if f.name in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")
}

router = APIRouter(include_in_schema=False)


def _base(request: Request) -> str:
    return request.scope.get("root_path", "").rstrip("/")


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    base = _base(request)
    return get_swagger_ui_html(
        openapi_url=f"{base}{request.app.openapi_url}", title=f"{request.app.title} API",
        swagger_js_url=f"{base}{ASSETS_PATH}/swagger-ui-bundle.js", swagger_css_url=f"{base}{ASSETS_PATH}/swagger-ui.css",
        swagger_favicon_url=f"{base}{ASSETS_PATH}/favicon.png",
    )


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    base = _base(request)
    return get_redoc_html(
        openapi_url=f"{base}{request.app.openapi_url}", title=f"{request.app.title} API",
        redoc_js_url=f"{base}{ASSETS_PATH}/redoc.standalone.js", redoc_favicon_url=f"{base}{ASSETS_PATH}/favicon.png",
        with_google_fonts=False,
    )


@router.get(ASSETS_PATH + "/{name}")
async def asset(name: str) -> Response:
    body = _ASSETS.get(name)
    if body is None:
        raise HTTPException(404, f"no such file: {name}")
    media_type = _MEDIA_TYPES[name[name.rfind("."):]]
    return Response(body, media_type=media_type, headers={"Cache-Control": _CACHE_CONTROL, "X-Content-Type-Options": "nosniff"})
