"""The Slack bot's pure parts: questions, Markdown to mrkdwn, splitting, blocks; `docent slack`'s token checks.

The final blocks are built from hand-made `Answer`s, sent through the shape of /stream's events
(`streamed`): the `sources` event names every source uncited, `done` says which were cited.
"""

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
from docent.types import Answer, Citation, Route, Source, Usage


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


DONE_FIELDS = {"answer_id", "llm", "route", "usage", "cost", "fallbacks", "timings_ms", "cached", "abstained", "citations"}
NOT_COVERED = "The documentation doesn't seem to cover this."


def an_answer(
    text: str, snippets: dict[int, str] | None = None, citations: list[Citation] | None = None, *,
    sources: int = 6, abstained: bool = False, llm: str = "echo", urls: dict[int, str] | None = None,
) -> Answer:
    """An answer over `sources` sources, those in `snippets` cited with that snippet."""
    snippets, urls = snippets or {}, urls or {}
    return Answer(
        answer_id="ans-1", question="q", index="docs", answer=text, llm=llm,
        sources=[
            Source(
                number=n, source=urls.get(n, f"https://orbit.example/docs/page-{n}.html#section-{n}"),
                title=f"Page {n} > Section {n}", text=f"The text of section {n}.", score=1 / n, similarity=0.5,
                cited=n in snippets, snippet=snippets.get(n, ""),
            )
            for n in range(1, sources + 1)
        ],
        route=Route(llm=llm, reason="test"), usage=Usage(), cost=0.0, timings_ms={"total": 1.0},
        abstained=abstained, citations=citations or [],
    )


def streamed(answer: Answer) -> tuple[list[dict], dict]:
    """The answer as /stream sends it: the `sources` event's sources (none cited yet) and the `done` event."""
    sources = [{**s.model_dump(mode="json"), "cited": False, "snippet": ""} for s in answer.sources]
    done = answer.model_dump(mode="json", include=DONE_FIELDS)
    done["sources"] = [{"number": s.number, "cited": s.cited, "snippet": s.snippet} for s in answer.sources]
    return sources, done


def final(answer: Answer) -> list[dict]:
    sources, done = streamed(answer)
    return messages.final_blocks(messages.to_mrkdwn(answer.answer), sources, done, answer.answer_id)


def texts(blocks: list[dict]) -> list[str]:
    return [b["text"]["text"] if b["type"] == "section" else b["elements"][0]["text"] for b in blocks if b["type"] != "actions"]


def types(blocks: list[dict]) -> list[str]:
    return [b["type"] for b in blocks]


def test_the_final_message_has_the_cited_sources_the_llm_and_feedback_buttons():
    sources = [
        {"number": 1, "source": "https://orbit.example/docs/a.html#x", "title": "Retries | <Orbit>", "score": 0.9},
        {"number": 2, "source": "guide/local.md", "title": "Local", "score": 0.5},
    ]
    done = {"llm": "echo", "fallbacks": [{"llm": "flaky"}],
            "sources": [{"number": 1, "cited": True, "snippet": "Retried <3> times."}, {"number": 2, "cited": True}]}
    blocks = messages.final_blocks("the answer [1]", sources, done, "ans-1")
    assert blocks[0] == messages.section("the answer [1]")
    assert blocks[1]["text"]["text"] == (
        "*Sources*\n<https://orbit.example/docs/a.html#x|[1] Retries ¦ &lt;Orbit&gt;>\n> Retried &lt;3&gt; times."
        "\n[2] Local `guide/local.md`"
    )
    assert blocks[2]["elements"][0]["text"] == "Answered by *echo* after flaky failed"
    buttons = blocks[3]["elements"]
    assert blocks[3]["block_id"] == messages.FEEDBACK_BLOCK_ID
    assert [b["action_id"] for b in buttons] == ["docent_feedback_up", "docent_feedback_down"]
    assert {b["value"] for b in buttons} == {"ans-1"}
    thanked = messages.thanks_blocks(blocks, "down", "U1")
    assert thanked[:3] == blocks[:3] and "Thanks for the feedback, <@U1>" in thanked[3]["elements"][0]["text"]
    assert messages.thanks_blocks(thanked, "up", "U2") == thanked


def test_cited_sources_come_first_with_their_snippets_and_the_rest_fold_into_one_line():
    long_snippet = "A failed job is retried up to max_retries times, waiting longer each time. " * 5
    answer = an_answer(
        "Jobs are retried [4]. They wait **longer** each time [2].",
        {4: "Jobs are retried up to three times.", 2: long_snippet},
        [Citation(sentence="Jobs are retried", sources=[4], supported=True, score=0.9),
         Citation(sentence="They wait **longer** each time", sources=[2], supported=True, score=0.8)],
    )
    blocks = final(answer)
    assert types(blocks) == ["section", "section", "context", "context", "actions"]
    answer_text, cited, folded, footer = texts(blocks)
    assert answer_text == "Jobs are retried [4]. They wait *longer* each time [2]."
    lines = cited.split("\n")
    assert lines[0] == "*Sources*"
    # In the sources' order (the retriever's), not the answer's; each snippet quoted, a long one shortened.
    assert lines[1] == "<https://orbit.example/docs/page-2.html#section-2|[2] Page 2 &gt; Section 2>"
    assert lines[2].startswith("> A failed job is retried") and lines[2].endswith("…")
    assert len(lines[2]) <= len("> ") + messages.SNIPPET_CHARS + 1
    assert lines[3:] == [
        "<https://orbit.example/docs/page-4.html#section-4|[4] Page 4 &gt; Section 4>", "> Jobs are retried up to three times.",
    ]
    assert folded == "+4 more: " + " · ".join(
        f"<https://orbit.example/docs/page-{n}.html#section-{n}|Page {n} &gt; Section {n}>" for n in (1, 3, 5, 6)
    )
    assert footer == "Answered by *echo*"
    assert not any(messages.UNSUPPORTED in text for text in texts(blocks))  # every citation is supported


def test_many_uncited_sources_are_counted_not_listed():
    blocks = final(an_answer("Nothing cited here.", sources=9))
    assert types(blocks) == ["section", "context", "context", "actions"]
    folded = texts(blocks)[1]
    assert folded.startswith("Sources (none cited): <https://orbit.example/docs/page-1.html#section-1|Page 1 &gt; Section 1>")
    assert folded.count("<https://") == messages.MORE_SOURCES_LISTED and folded.endswith(" · and 4 others")
    assert "*Sources*" not in " ".join(texts(blocks))


def test_unsupported_citations_are_marked_under_the_answer():
    answer = an_answer(
        "Orbit retries failed jobs [1]. Ray Serve scales deployments [2]. It runs on the moon [1, 3].",
        {1: "A failed job is retried.", 2: "Deployments are described here.", 3: "Workers run jobs."},
        [Citation(sentence="Orbit retries failed jobs", sources=[1], supported=True, score=0.9),
         Citation(sentence="Ray Serve scales deployments", sources=[2], supported=False, score=0.16),
         Citation(sentence="It runs on the moon", sources=[1, 3], supported=False, score=0.05)],
    )
    blocks = final(answer)
    assert types(blocks) == ["section", "context", "section", "context", "context", "actions"]
    assert texts(blocks)[1] == (
        "⚠️ [2] not supported by its source: “Ray Serve scales deployments”\n"
        "⚠️ [1, 3] not supported by its sources: “It runs on the moon”"
    )
    assert texts(blocks)[2].count("\n> ") == 3  # the three cited sources, each with its snippet


def test_an_abstained_answer_says_not_in_the_docs_and_lists_the_nearest_pages_without_sources():
    text = (
        f"{NOT_COVERED}\n\nThe nearest pages:\n- [Client API](https://orbit.example/docs/api/client.html)\n"
        "- [Orbit documentation](https://orbit.example/docs/index.html)"
    )
    blocks = final(an_answer(text, abstained=True, llm="none"))
    assert types(blocks) == ["context", "section", "context", "actions"]
    header, body, footer = texts(blocks)
    assert header == messages.NOT_IN_THE_DOCS
    assert body == (
        f"{NOT_COVERED}\n\nThe nearest pages:\n• <https://orbit.example/docs/api/client.html|Client API>\n"
        "• <https://orbit.example/docs/index.html|Orbit documentation>"
    )
    assert footer == "Searched the docs; no LLM was asked"
    assert "Sources" not in " ".join(texts(blocks)) and "more:" not in " ".join(texts(blocks))


def test_an_llm_that_says_the_docs_do_not_cover_it_gets_the_nearest_pages_from_its_sources():
    urls = {1: "https://orbit.example/docs/a.html#one", 2: "https://orbit.example/docs/a.html#two",
            3: "https://orbit.example/docs/b.html#x", 4: "guide/c.md", 5: "https://orbit.example/docs/d.html"}
    blocks = final(an_answer(NOT_COVERED, abstained=True, sources=5, urls=urls))
    assert types(blocks) == ["context", "section", "context", "context", "actions"]
    assert texts(blocks)[2] == (
        "The nearest pages: <https://orbit.example/docs/a.html|Page 1> · <https://orbit.example/docs/b.html|Page 3> · "
        "Page 4 `guide/c.md`"
    )
    assert texts(blocks)[3] == "Answered by *echo*"


def test_many_sources_stay_within_a_section():
    sources = [
        {"number": i, "source": f"https://x.example/{'p' * 200}/{i}", "title": "t" * 100, "snippet": "s " * 150}
        for i in range(1, 40)
    ]
    text = messages.sources_text(sources)
    assert len(text) <= messages.SECTION_TEXT_LIMIT and text.endswith("more")
    folded = messages.more_sources_text([{**s, "source": s["source"] * 3} for s in sources], True)
    assert len(folded) <= messages.CONTEXT_TEXT_LIMIT and folded.startswith("+39 more: ") and folded.endswith("others")


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
