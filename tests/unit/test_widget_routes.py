"""The widget's routes on an app with just the widget router: content types, caching, the page's policy."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from html.parser import HTMLParser

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.gateway import widget
from tests.conftest import ROOT

STATIC = ROOT / "services" / "gateway" / "static"


@pytest.fixture(scope="module")
def client() -> TestClient:
    app = FastAPI()
    app.include_router(widget.router)
    return TestClient(app)


@pytest.mark.parametrize(("path", "media_type", "cache_control"), [
    ("/", "text/html; charset=utf-8", "no-cache"),
    ("/widget.js", "text/javascript; charset=utf-8", "public, max-age=300"),
    ("/widget.css", "text/css; charset=utf-8", "public, max-age=300"),
])
def test_each_file_is_served_with_its_type_and_cache_policy(client, path, media_type, cache_control):
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == media_type
    assert response.headers["cache-control"] == cache_control
    assert response.headers["x-content-type-options"] == "nosniff"
    if path != "/":  # embeddable in any site, even one that admits only resources saying so (COEP)
        assert response.headers["cross-origin-resource-policy"] == "cross-origin"
    name = "index.html" if path == "/" else path.lstrip("/")
    assert response.content == (STATIC / name).read_bytes()


def test_a_cached_copy_is_revalidated_by_its_etag(client):
    first = client.get("/widget.js")
    etag = first.headers["etag"]
    again = client.get("/widget.js", headers={"If-None-Match": f'"stale", W/{etag}'})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag and again.headers["cache-control"] == "public, max-age=300"
    changed = client.get("/widget.js", headers={"If-None-Match": '"stale"'})
    assert changed.status_code == 200 and changed.content == first.content


def test_head_answers_the_headers_without_a_body(client):
    response = client.head("/widget.js")
    assert response.status_code == 200 and response.content == b""
    assert response.headers["content-type"].startswith("text/javascript")


def test_the_widget_routes_stay_out_of_the_api_schema(client):
    paths = client.app.openapi()["paths"]
    assert not {"/", "/widget.js", "/widget.css"} & set(paths)


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.inline_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        if self.tags and self.tags[-1][0] == "script" and data.strip():
            self.inline_script = True


def test_the_page_loads_only_its_own_files_under_a_strict_policy(client):
    response = client.get("/")
    policy = dict(part.strip().split(" ", 1) for part in response.headers["content-security-policy"].split(";"))
    assert policy["default-src"] == "'none'" and policy["connect-src"] == "'self'"
    assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'"  # no inline script or style
    assert response.headers["referrer-policy"] == "no-referrer"

    page = _Tags()
    page.feed(response.text)
    assert not page.inline_script
    assert not any(tag == "style" or "style" in attrs for tag, attrs in page.tags)
    scripts = [attrs for tag, attrs in page.tags if tag == "script"]
    assert scripts == [{"src": "widget.js", "data-target": "#docent", "data-key-from-fragment": None, "defer": None}]
    assert any(attrs.get("id") == "docent" for _, attrs in page.tags)


def test_the_widget_never_parses_text_as_html():
    source = (STATIC / "widget.js").read_text()
    code = re.sub(r"/\*.*?\*/|//[^\n]*", "", source, flags=re.DOTALL)  # comments may name what the code avoids
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in code, f"widget.js uses {sink}"


def test_every_static_file_ships_as_package_data():
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    shipped = patterns.get(widget.STATIC_PACKAGE, [])
    for path in STATIC.iterdir():
        relative = f"{widget.STATIC_DIR}/{path.name}"
        assert any(fnmatch.fnmatch(relative, pattern) for pattern in shipped), (
            f"{relative} is not in [tool.setuptools.package-data] {widget.STATIC_PACKAGE!r} of pyproject.toml"
        )


def test_a_missing_file_stops_the_gateway_at_import_not_at_the_first_request():
    with pytest.raises(FileNotFoundError):
        widget.load_static("no-such-file.js", "text/javascript", widget.ASSET_CACHE_CONTROL)
