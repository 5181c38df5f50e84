"""/docs and /redoc load nothing from the internet: every script and style they name is served here."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from services.gateway.app import create_app


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(create_app())


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_api_pages_name_only_files_the_gateway_serves(client, page):
    html = client.get(page)
    assert html.status_code == 200 and "text/html" in html.headers["content-type"]
    named = re.findall(r"""(?:src|href)=["']([^"']+)["']|url: ?['"]([^'"]+)['"]""", html.text)
    urls = [u for pair in named for u in pair if u]
    assert urls and not [u for u in urls if u.startswith(("http:", "https:", "//"))], urls
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url
        assert len(response.content) > 1000 or url.endswith("openapi.json"), url


def test_an_unknown_asset_is_404(client):
    assert client.get("/docs-assets/nothing.js").status_code == 404
