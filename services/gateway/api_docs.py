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

from services.gateway.widget import static_file

ASSETS_PATH = "/docs-assets"
_MEDIA_TYPES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8", "redoc.standalone.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8", "favicon.png": "image/png",
}
_CACHE_CONTROL = "public, max-age=86400"  # versioned with the package: a day is safe
_ASSETS = {
    name: static_file((resources.files("fastapi_offline") / "static" / name).read_bytes(), media_type, _CACHE_CONTROL)
    for name, media_type in _MEDIA_TYPES.items()
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
async def asset(name: str, request: Request) -> Response:
    if name not in _ASSETS:
        raise HTTPException(404, f"no such file: {name}")
    return _ASSETS[name].response(request)
