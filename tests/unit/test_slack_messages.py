"""The Slack bot's pure parts: questions, Markdown to mrkdwn, splitting, blocks; `docent slack`'s token checks."""

from __future__ import annotations

import re

import pytest
import typer
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cli.slack import slack
from clients.slack import messages
from clients.slack.bot import MissingTokens, SlackTokens
from docent.settings import SlackSettings


def test_the_question_is_the_message_without_the_bot_s_mention_and_markup():
    text = "<@UBOT> how do I use <https://docs.ray.io/x|this page> with <@U123|ann> &amp; <#C1|general>?"
    assert messages.question_of(text, "UBOT") == "how do I use this page with ann & general?"
    assert messages.question_of("<@UBOT>", "UBOT") == ""
    assert messages.question_of("is a &lt; b?  <mailto:x@y.z>", None) == "is a < b? x@y.z"


def test_markdown_becomes_mrkdwn():
    md = (
        "# Scaling\n**Bold** and *italic* and ~~gone~~, see [the guide](https://docs.ray.io/a?b=1) [1].\n"
        "- one\n* two\n\n```python\nx = a < b and **not** bold\n```\nuse `a<b` & done"
    )
    out = messages.to_mrkdwn(md)
    assert out.startswith("*Scaling*\n*Bold* and _italic_ and ~gone~, see <https://docs.ray.io/a?b=1|the guide> [1].")
    assert "• one\n• two" in out
    assert "```\nx = a &lt; b and **not** bold\n```" in out  # code untouched but escaped; language tag dropped
    assert "`a&lt;b` &amp; done" in out
    assert messages.to_mrkdwn("2*3*4 and __init__") == "2*3*4 and __init__"


def test_short_text_is_one_part():
    assert messages.split_message("  hello  ", 100) == ["hello"]
    assert messages.split_message("", 100) == [""]


def test_long_text_splits_at_paragraphs_then_lines_then_words():
    paragraph = "word " * 30  # 150 characters
    text = f"{paragraph.strip()}\n\n{paragraph.strip()}\n\n{paragraph.strip()}"
    parts = messages.split_message(text, 200)
    assert parts == [paragraph.strip()] * 3
    lines = "\n".join(f"line {i} " + "x" * 40 for i in range(10))
    parts = messages.split_message(lines, 120)
    assert all(len(p) <= 120 for p in parts) and all(p.startswith("line ") for p in parts)
    assert "\n".join(parts) == lines


def test_a_cut_never_falls_inside_a_link_or_an_entity():
    link = "<https://docs.ray.io/en/master/serve/index.html|Ray Serve overview>"
    text = ("see " + link + " &amp; ") * 20
    for limit in (80, 100, 150, 333):
        parts = messages.split_message(text, limit)
        assert all(len(p) <= limit for p in parts)
        for part in parts:
            assert part.count("<") == part.count(">")
            assert not re.search(r"&[a-z]*$", part) and not re.match(r"^[a-z]*;", part)


def test_a_code_block_cut_in_two_is_closed_and_reopened():
    code = "```\n" + "\n".join(f"print({i})" for i in range(60)) + "\n```\nafter"
    parts = messages.split_message(code, 200)
    assert len(parts) > 1
    for part in parts:
        assert len(part) <= 200
        assert part.count("```") % 2 == 0 or part == parts[-1] and part.count("```") == 2
    assert parts[0].startswith("```\n") and parts[0].endswith("\n```")
    assert parts[1].startswith("```\n")


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from([*"ab c\n\n<>|&`*_", "word ", "&amp;", "<http://x.y|l k>", "```"]), max_size=600)
    .map("".join),
    st.integers(min_value=messages.MIN_SPLIT_LIMIT, max_value=400),
)
def test_every_part_fits_and_nothing_is_lost(text, limit):
    parts = messages.split_message(text, limit)
    assert all(len(p) <= limit for p in parts)
    if "```" not in text:  # fences add markers; otherwise only the whitespace at cuts goes
        assert re.sub(r"\s", "", "".join(parts)) == re.sub(r"\s", "", text)


def test_the_final_message_has_the_sources_as_links_the_llm_and_feedback_buttons():
    sources = [
        {"number": 1, "source": "https://orbit.example/docs/a.html#x", "title": "Retries | <Orbit>", "score": 0.9},
        {"number": 2, "source": "guide/local.md", "title": "Local", "score": 0.5},
    ]
    blocks = messages.final_blocks("the answer [1]", sources, {"llm": "echo", "fallbacks": [{"llm": "flaky"}]}, "ans-1")
    assert blocks[0] == messages.section("the answer [1]")
    assert blocks[1]["text"]["text"] == (
        "*Sources*\n<https://orbit.example/docs/a.html#x|[1] Retries ¦ &lt;Orbit&gt;>\n[2] Local `guide/local.md`"
    )
    assert blocks[2]["elements"][0]["text"] == "Answered by *echo* after flaky failed"
    buttons = blocks[3]["elements"]
    assert blocks[3]["block_id"] == messages.FEEDBACK_BLOCK_ID
    assert [b["action_id"] for b in buttons] == ["docent_feedback_up", "docent_feedback_down"]
    assert {b["value"] for b in buttons} == {"ans-1"}
    thanked = messages.thanks_blocks(blocks, "down", "U1")
    assert thanked[:3] == blocks[:3] and "Thanks for the feedback, <@U1>" in thanked[3]["elements"][0]["text"]
    assert messages.thanks_blocks(thanked, "up", "U2") == thanked


def test_many_sources_stay_within_a_section():
    sources = [{"number": i, "source": f"https://x.example/{'p' * 200}/{i}", "title": "t" * 100} for i in range(1, 40)]
    text = messages.sources_text(sources)
    assert len(text) <= messages.SECTION_TEXT_LIMIT and text.endswith("more")


def test_apologies_are_short_and_say_what_to_do():
    assert "can't reach" in messages.apology(0)
    assert "too long" in messages.apology(408)
    assert "try again" in messages.apology(503)
    assert "&lt;" in messages.apology(422, "query: too long <2000>")


def test_tokens_come_from_the_variables_the_settings_name():
    socket_mode = SlackSettings()
    tokens = SlackTokens.from_env(socket_mode, {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xapp-1"})
    assert tokens == SlackTokens("xoxb-1", "xapp-1", None)
    http = SlackSettings(mode="http", signing_secret_env="MY_SECRET")
    with pytest.raises(MissingTokens, match="MY_SECRET") as missing:
        SlackTokens.from_env(http, {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xapp-1"})
    assert "SLACK_BOT_TOKEN" not in str(missing.value)


def test_docent_slack_without_tokens_exits_2_naming_them(monkeypatch):
    for name in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET"):
        monkeypatch.delenv(name, raising=False)
    app = typer.Typer()
    app.command("slack")(slack)
    app.command("other")(lambda: None)  # two commands: `slack` is named on the command line
    result = CliRunner().invoke(app, ["slack"])
    assert result.exit_code == 2
    assert "SLACK_BOT_TOKEN and SLACK_APP_TOKEN" in result.output
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    result = CliRunner().invoke(app, ["slack", "--mode", "http"])
    assert result.exit_code == 2 and "SLACK_SIGNING_SECRET" in result.output and "SLACK_BOT_TOKEN" not in result.output


def test_docent_slack_with_a_token_slack_rejects_exits_2(monkeypatch):
    from tests.fake_slack import FakeSlack
    from tests.gateway_fixtures import free_port

    fake = FakeSlack(bot_token="xoxb-good", app_token="xapp-good").start()
    try:
        monkeypatch.setenv("DOCENT_SLACK__API_URL", fake.api_url)
        monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-good")
        monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-revoked")
        app = typer.Typer()
        app.command("slack")(slack)
        app.command("other")(lambda: None)
        result = CliRunner().invoke(app, ["slack", "--host", "127.0.0.1", "--port", str(free_port())])
        assert result.exit_code == 2, result.output
        assert "Slack rejected the token in SLACK_APP_TOKEN (invalid_auth)" in result.output
    finally:
        fake.stop()
