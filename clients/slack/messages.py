"""What the bot says, as Slack text and Block Kit: pure functions, no I/O.

Answers arrive as Markdown; Slack shows `mrkdwn`, so `to_mrkdwn` converts them. Long
answers are split by `split_message` at paragraph, line or word boundaries, never inside
a link or an entity, closing and reopening a code block that a cut falls into.

Under an answer's last part (`final_blocks`): the claims whose cited source does not seem
to say them, the sources the answer cites (each with the passage it used), the others
folded into one line, the LLM and the feedback buttons. An answer saying the docs don't
cover the question (`abstained`) looks different: a "Not in the docs" line above it, the
nearest pages, and no sources.
"""

from __future__ import annotations

import re
from typing import Any

# A section block's text may hold at most 3000 characters.
SECTION_TEXT_LIMIT = 3000

FEEDBACK_BLOCK_ID = "docent_feedback"
FEEDBACK_ACTION = "docent_feedback_{rating}"
FEEDBACK_ACTION_PATTERN = re.compile(r"^docent_feedback_(up|down)$")
RATING_EMOJI = {"up": "👍", "down": "👎"}

PLACEHOLDER = "⏳ Looking through the docs…"
WRITING = "✍️ _writing…_"
THANKS = "Thanks for the feedback"
FEEDBACK_FAILED = "😕 Sorry, I couldn't record your feedback. Please try again later."
EMPTY_QUESTION = (
    "Ask me a question about the docs, e.g. _How do I scale a deployment?_ "
    "Mention me in a channel or send me a direct message."
)

_FENCE = "```"

SNIPPET_CHARS = 200  # of a cited source's snippet
TITLE_CHARS = 80  # of a source's title in the folded line
CLAIM_CHARS = 100  # of an unsupported claim quoted
MORE_SOURCES_LISTED = 5  # uncited sources named in the folded line; the others are counted
NEAREST_PAGES = 3
CONTEXT_TEXT_LIMIT = 2000  # a context block's text element may hold at most 3000 characters
NOT_IN_THE_DOCS = "🔍 *Not in the docs*"
UNSUPPORTED = "⚠️"


# --- the question ---------------------------------------------------------------------

_USER_MENTION = re.compile(r"<@([A-Z0-9]+)(?:\|[^>]*)?>")
_SPECIAL = re.compile(r"<([^<>|]*)(?:\|([^<>]*))?>")


def question_of(text: str, bot_user_id: str | None = None) -> str:
    """The question in a message: the bot's mention removed, Slack's markup made plain text."""
    if bot_user_id:
        text = re.sub(rf"<@{re.escape(bot_user_id)}(?:\|[^>]*)?>", " ", text)

    def plain(match: re.Match[str]) -> str:
        target, label = match.group(1), match.group(2)
        if target.startswith(("@", "#")):  # another user or a channel
            return label or target
        if target.startswith("!"):  # <!here>, <!channel>, <!subteam^…|@team>
            return label or ""
        return label or target.removeprefix("mailto:")  # a link: its label, else the URL

    text = _SPECIAL.sub(plain, text)
    text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return " ".join(text.split())


# --- Markdown to mrkdwn ---------------------------------------------------------------

_CODE = re.compile(r"```[^\n`]*\n?.*?(?:```|\Z)|`[^`\n]+`", re.DOTALL)
_MD_LINK = re.compile(r"\[([^\]\n]+)\]\((https?://[^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
_ITALIC = re.compile(r"(?<![*\w])\*(?=[^\s*])([^*\n]+?)(?<=[^\s*])\*(?![*\w])")
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
_BULLET = re.compile(r"^(\s*)[-*+]\s+", re.MULTILINE)
_BOLD_MARK = "\x00"  # stands for mrkdwn's `*` while single-star italics are converted


def escape(text: str) -> str:
    """Slack's three control characters, escaped as its API asks."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_mrkdwn(markdown: str) -> str:
    """Markdown (what LLMs write) as Slack mrkdwn: bold, italics, links, headings, bullets, code."""
    out, last = [], 0
    for match in _CODE.finditer(markdown):
        out.append(_inline_to_mrkdwn(markdown[last:match.start()]))
        code = match.group(0)
        if code.startswith(_FENCE):  # Slack shows a fence's language tag as text: drop it
            code = re.sub(r"^```[^\n`]*\n?", "```\n", code, count=1)
        out.append(escape(code))
        last = match.end()
    out.append(_inline_to_mrkdwn(markdown[last:]))
    return "".join(out)


def _inline_to_mrkdwn(text: str) -> str:
    links: list[str] = []

    def keep_link(match: re.Match[str]) -> str:
        label = escape(match.group(1)).replace("|", "¦")
        links.append(f"<{match.group(2).replace('|', '%7C')}|{label}>")
        return f"\x01{len(links) - 1}\x01"

    text = _MD_LINK.sub(keep_link, text)
    text = escape(text)
    text = _HEADING.sub(lambda m: f"{_BOLD_MARK}{m.group(1)}{_BOLD_MARK}", text)
    text = _BOLD.sub(lambda m: f"{_BOLD_MARK}{m.group(1)}{_BOLD_MARK}", text)
    text = _ITALIC.sub(r"_\1_", text)
    text = _STRIKE.sub(r"~\1~", text)
    text = _BULLET.sub(r"\1• ", text)
    text = text.replace(_BOLD_MARK, "*")
    return re.sub("\x01(\\d+)\x01", lambda m: links[int(m.group(1))], text)


# --- splitting ------------------------------------------------------------------------

# Spans a cut must not fall into: links and mentions, entities, fence markers.
_ATOMIC = re.compile(r"<[^<>\n]{0,4000}>|&(?:amp|lt|gt);|```")


def split_message(text: str, limit: int) -> list[str]:
    """`text` in parts of at most `limit` characters, cut where a reader would.

    A cut prefers a paragraph break, then a line break, then a space; it never falls
    inside a link, a mention or an entity (unless one alone is longer than half a part).
    A code block that a cut falls into is closed at the end of the part and reopened
    at the start of the next.
    """
    if limit < MIN_SPLIT_LIMIT:
        raise ValueError(f"messages cannot be split into parts shorter than {MIN_SPLIT_LIMIT} characters")
    text = text.strip()
    parts: list[str] = []
    while len(text) > limit:
        room = limit - len(_FENCE) - 1  # for closing a code block the cut falls into
        end, start = _cut(text, room)
        head, text = text[:end].rstrip(), text[start:]
        if head.count(_FENCE) % 2:  # an open code block: close it here, reopen it next
            head += "\n" + _FENCE
            text = _FENCE + "\n" + text.lstrip("\n")
        if head.strip():
            parts.append(head)
    if text.strip():
        parts.append(text)
    return parts or [""]


MIN_SPLIT_LIMIT = 40


def _cut(text: str, room: int) -> tuple[int, int]:
    """Where the part ends and where the rest starts: at least a quarter of `room` along."""
    blocked = [m.span() for m in _ATOMIC.finditer(text, 0, min(len(text), room + 4000))]

    def free(position: int) -> bool:
        return not any(start < position < end for start, end in blocked)

    least = len(_FENCE) * 2 + 2  # a part reopening a code block must still move the text along
    for separator, earliest in (("\n\n", room // 2), ("\n", room // 3), (" ", room // 4), (" ", least), ("\n", least)):
        position = text.rfind(separator, earliest, room + len(separator))
        while position >= earliest and not free(position):
            position = text.rfind(separator, earliest, position)
        if position >= earliest:
            return position, position + len(separator)
    end = room  # a hard cut: before an atomic span rather than inside it, unless that leaves too little
    for start, stop in blocked:
        if start < end < stop and start >= least:
            end = start
    return end, end


# --- blocks ---------------------------------------------------------------------------


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text or " "}}


def context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def placeholder_blocks() -> list[dict[str, Any]]:
    return [context(PLACEHOLDER)]


def streaming_blocks(part: str) -> list[dict[str, Any]]:
    """The part of an answer still being written."""
    return [section(part), context(WRITING)]


def text_blocks(part: str) -> list[dict[str, Any]]:
    return [section(part)]


def shorten(text: str, limit: int) -> str:
    """`text` on one line, shortened to about `limit` characters at a word."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[:limit]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit * 0.6 else cut).rstrip(" ,;:.…-") + "…"


def source_link(source: dict[str, Any], number: bool = True, title_chars: int | None = None) -> str:
    """A source as a link to its section (`[n] title`), or its title and path when it has no URL."""
    title = " ".join(str(source.get("title") or "").split()) or "untitled"
    if title_chars:
        title = shorten(title, title_chars)
    label = escape(f"[{source.get('number')}] {title}" if number else title)
    url = str(source.get("source") or "")
    if re.match(r"https?://", url):
        return f"<{url.replace('|', '%7C').replace('>', '%3E')}|{label.replace('|', '¦')}>"
    return f"{label} `{escape(url)}`" if url else label  # indexed without a base URL: a path, not a link


def settled_sources(sources: list[dict[str, Any]], done: dict[str, Any]) -> list[dict[str, Any]]:
    """The `sources` event's sources with what `done` says of each: cited or not, and the snippet used."""
    said = {s.get("number"): s for s in done.get("sources") or [] if isinstance(s, dict)}
    settled = []
    for i, source in enumerate(sources):
        number = source.get("number", i + 1)
        known = said.get(number, {})
        snippet = known.get("snippet")
        settled.append({
            **source, "number": number, "cited": known.get("cited") is True,
            "snippet": snippet if isinstance(snippet, str) else "",
        })
    return settled


def sources_text(sources: list[dict[str, Any]], limit: int = SECTION_TEXT_LIMIT) -> str:
    """`*Sources*` and one numbered link per source, each with its snippet quoted, within a section's limit."""
    lines = ["*Sources*"]
    for i, source in enumerate(sources):
        line = source_link({"number": i + 1, **source})
        snippet = shorten(str(source.get("snippet") or ""), SNIPPET_CHARS)
        if snippet:
            line += f"\n> {escape(snippet)}"
        more = f"… and {len(sources) - i} more"
        if len("\n".join([*lines, line])) + len(more) + 1 > limit:
            lines.append(more)
            break
        lines.append(line)
    return "\n".join(lines)


def more_sources_text(sources: list[dict[str, Any]], any_cited: bool) -> str:
    """The sources the answer did not cite, folded into one line: `+N more: <url|title> · …`."""
    head = f"+{len(sources)} more: " if any_cited else "Sources (none cited): "
    listed: list[str] = []
    for source in sources[:MORE_SOURCES_LISTED]:
        link = source_link(source, number=False, title_chars=TITLE_CHARS)
        if len(head) + len(" · ".join([*listed, link])) > CONTEXT_TEXT_LIMIT:
            break
        listed.append(link)
    rest = len(sources) - len(listed)
    return head + " · ".join(listed) + (f" · and {rest} others" if rest else "")


def unsupported_text(citations: list[dict[str, Any]]) -> str:
    """A line per cited claim that its source does not seem to say (`supported: false`)."""
    lines = []
    for citation in citations:
        if not isinstance(citation, dict) or citation.get("supported") is not False:
            continue
        numbers = [str(n) for n in citation.get("sources") or []]
        marks = f"[{', '.join(numbers)}]"
        by = "its source" if len(numbers) == 1 else "its sources"
        claim = shorten(str(citation.get("sentence") or ""), CLAIM_CHARS)
        line = f"{UNSUPPORTED} {marks} not supported by {by}" + (f": “{escape(claim)}”" if claim else "")
        if len("\n".join([*lines, line])) > CONTEXT_TEXT_LIMIT:
            break
        lines.append(line)
    return "\n".join(lines)


def nearest_pages_text(sources: list[dict[str, Any]]) -> str:
    """The pages (not sections) of the first sources, for an abstained answer that names none itself."""
    pages: dict[str, dict[str, Any]] = {}
    for source in sources:
        page = str(source.get("source") or "").split("#", 1)[0]
        if page and page not in pages:
            pages[page] = {"source": page, "title": str(source.get("title") or "").split(" > ", 1)[0]}
    links = [source_link(p, number=False, title_chars=TITLE_CHARS) for p in list(pages.values())[:NEAREST_PAGES]]
    return f"The nearest pages: {' · '.join(links)}" if links else ""


def footer_text(done: dict[str, Any]) -> str:
    """The LLM that answered (and the ones that failed before it)."""
    llm = escape(str(done.get("llm") or "unknown"))
    if llm == "extractive":
        text = "Answered with a passage of the docs (no LLM)"
    elif llm == "none":
        text = "Searched the docs; no LLM was asked"
    else:
        text = f"Answered by *{llm}*"
    failed = [escape(str(f.get("llm"))) for f in done.get("fallbacks") or []]
    if failed:
        text += f" after {', '.join(failed)} failed"
    if done.get("cached"):
        text += " · from the cache"
    return text


def feedback_actions(answer_id: str) -> dict[str, Any]:
    """👍 / 👎 buttons whose value is the answer's id."""
    return {
        "type": "actions",
        "block_id": FEEDBACK_BLOCK_ID,
        "elements": [
            {
                "type": "button",
                "action_id": FEEDBACK_ACTION.format(rating=rating),
                "text": {"type": "plain_text", "text": f"{emoji} {label}", "emoji": True},
                "value": answer_id,
            }
            for rating, emoji, label in (("up", "👍", "Helpful"), ("down", "👎", "Not helpful"))
        ],
    }


def final_blocks(
    part: str, sources: list[dict[str, Any]], done: dict[str, Any], answer_id: str | None
) -> list[dict[str, Any]]:
    """The last part of an answer: its text, the claims its sources don't support, the cited sources
    with their snippets, the others in one line, the LLM, the feedback buttons.

    `sources` are the `sources` event's; `done` (the `done` event) says which were cited. An
    abstained answer gets a "Not in the docs" line above it and its nearest pages, no sources.
    """
    sources = settled_sources(sources, done)
    if done.get("abstained"):
        blocks = [context(NOT_IN_THE_DOCS), section(part)]
        nearest = "" if "<http" in part else nearest_pages_text(sources)
        if nearest:
            blocks.append(context(nearest))
    else:
        blocks = [section(part)]
        unsupported = unsupported_text(done.get("citations") or [])
        if unsupported:
            blocks.append(context(unsupported))
        cited = [s for s in sources if s["cited"]]
        rest = [s for s in sources if not s["cited"]]
        if cited:
            blocks.append(section(sources_text(cited)))
        if rest:
            blocks.append(context(more_sources_text(rest, bool(cited))))
    blocks.append(context(footer_text(done)))
    if answer_id:
        blocks.append(feedback_actions(answer_id))
    return blocks


def thanks_blocks(blocks: list[dict[str, Any]], rating: str, user: str | None) -> list[dict[str, Any]]:
    """The answer's blocks with its buttons replaced by a thank-you."""
    who = f", <@{user}>" if user else ""
    thanks = context(f"{RATING_EMOJI.get(rating, '')} {THANKS}{who}!")
    kept = [b for b in blocks if b.get("block_id") != FEEDBACK_BLOCK_ID]
    return [*kept, thanks] if len(kept) < len(blocks) else blocks


def apology(status: int, message: str = "") -> str:
    """A short apology for a failed answer, saying what the asker can do."""
    if status == 0:
        return "😕 Sorry, I can't reach the docs service right now. Please try again in a few minutes."
    if status == 408:
        return "😕 Sorry, the docs service is taking too long to answer. Please try again in a few minutes."
    if status == 429:
        return "😕 Sorry, too many questions at once right now. Please try again in a minute."
    if status in (401, 403):
        return "😕 Sorry, the docs service refused my request (the bot's API key needs attention)."
    if status == 422 and message:  # the question itself: too long, empty
        return f"😕 Sorry, I couldn't ask that: {escape(message)}"
    return "😕 Sorry, something went wrong while answering. Please try again later."
