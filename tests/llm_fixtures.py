"""The `llm_server` fixture: one real OpenAI-compatible test server for the whole session.

Loaded from the root conftest with `pytest_plugins = ["tests.llm_fixtures"]`.
"""

from __future__ import annotations

import pytest

from tests.llm_server import LLMServer


@pytest.fixture(scope="session")
def llm_server():
    server = LLMServer().start()
    yield server
    server.stop()
