"""The deploy docs' commands match the code: auth is on by default, so every call that asks
needs a key made by a documented step; the selectors they use select what the manifests make."""

from __future__ import annotations

import re

from docent.settings import Settings
from tests.conftest import ROOT
from tests.unit.test_k8s import one, rendered

DEPLOY = (ROOT / "docs" / "deploy.md").read_text()
COMPOSE_HEADER = "".join(
    line for line in (ROOT / "docker-compose.yml").read_text().splitlines(keepends=True) if line.startswith("#")
)
ASKING = re.compile(r"curl[^\n]*(?:\\\n[^\n]*)*?/(?:query|stream)\b[^\n]*(?:\\\n[^\n]*)*")


def test_auth_is_on_by_default():
    assert Settings().auth_enabled


def test_every_documented_call_that_asks_sends_a_key_made_before_it():
    for where, text in (("docs/deploy.md", DEPLOY), ("docker-compose.yml", COMPOSE_HEADER)):
        calls = ASKING.findall(text)
        assert calls, where
        for call in calls:
            assert "Authorization: Bearer $KEY" in call, f"{where}: {call}"
            made = text[: text.index(call)]
            assert re.search(r"KEY=\$\((?:docker compose exec -T ray-head|kubectl [^)]*exec)[^)]*docent keys create", made), (
                f"{where}: no key created before {call!r}"
            )


def test_the_documented_head_pod_selector_selects_the_rayservice_head():
    (label,) = re.findall(r"-l (app\.kubernetes\.io/component=[\w-]+)", DEPLOY)
    key, _, value = label.partition("=")
    head = one(rendered("dev"), "RayService")["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]
    assert head["metadata"]["labels"][key] == value
    assert head["spec"]["containers"][0]["name"] == "ray-head"  # `exec -c ray-head`


def test_the_slack_app_manifest_is_a_file_with_what_the_bot_uses_and_the_docs_say():
    import yaml

    manifest = yaml.safe_load((ROOT / "clients" / "slack" / "manifest.yaml").read_text())
    slack_docs = (ROOT / "docs" / "slack.md").read_text()
    assert "clients/slack/manifest.yaml" in slack_docs
    scopes = manifest["oauth_config"]["scopes"]["bot"]
    assert ", ".join(scopes) in slack_docs
    # Mentions and direct messages, replies in threads (read back with their history), buttons.
    assert set(manifest["settings"]["event_subscriptions"]["bot_events"]) == {"app_mention", "message.im"}
    assert {"chat:write", "app_mentions:read", "im:history", "channels:history"} <= set(scopes)
    assert manifest["settings"]["interactivity"]["is_enabled"] and manifest["settings"]["socket_mode_enabled"]
