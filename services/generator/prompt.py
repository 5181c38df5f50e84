"""The chat messages sent to an LLM: the system prompt, then the numbered sources and the question.

Sources are numbered from 1 in the order of the hits, as the answer's `Source.number`s
are, so an answer's [n] points at the right source. Only the retrieved text is trimmed to
a token budget: whole sources in order while they fit, then part of the next one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from docent.text import page_section_title
from docent.tokenizer import Tokenizer
from docent.types import SearchHit

# A cut source shorter than this is mostly its header and a broken sentence: not worth its tokens.
MIN_TRUNCATED_SOURCE_TOKENS = 20
_SOURCE_SEPARATOR = "\n\n"
_CONTEXT_HEADING = "Sources:\n"


@dataclass
class PromptBuild:
    messages: list[dict[str, str]]
    sources_used: int  # the first `sources_used` hits are in the prompt (the last one maybe cut)
    prompt_tokens: int


def source_header(number: int, hit: SearchHit) -> str:
    """`[n] Page > Section (url)`, without a title repeated or missing."""
    heading = page_section_title(hit.page_title, hit.section_title)
    return f"[{number}] {heading} ({hit.source})" if heading else f"[{number}] {hit.source}"


def format_source(number: int, hit: SearchHit) -> str:
    return f"{source_header(number, hit)}\n{hit.text}"


def fit_sources(hits: Sequence[SearchHit], budget: int, tokenizer: Tokenizer) -> list[str]:
    """The formatted sources that fit in `budget` tokens: a prefix of the hits, the last maybe cut.

    Sources are counted one by one (separators included) rather than as one block: the
    sum equals the block's count for tokenizers that split on whitespace and is within a
    token per source for BPE ones.
    """
    fitted: list[str] = []
    left = budget - tokenizer.count(_CONTEXT_HEADING)
    for number, hit in enumerate(hits, start=1):
        source = format_source(number, hit) + _SOURCE_SEPARATOR
        tokens = tokenizer.count(source)
        if tokens <= left:
            fitted.append(source)
            left -= tokens
            continue
        if cut := cut_source(number, hit, left, tokenizer):
            fitted.append(cut)
        break
    return fitted


def cut_source(number: int, hit: SearchHit, tokens_left: int, tokenizer: Tokenizer) -> str | None:
    """The source with its text cut to fit `tokens_left`; None when too little of the text would remain."""
    header = source_header(number, hit) + "\n"
    text_tokens = tokens_left - tokenizer.count(header) - tokenizer.count(_SOURCE_SEPARATOR)
    if text_tokens < MIN_TRUNCATED_SOURCE_TOKENS:
        return None
    return header + tokenizer.truncate(hit.text, text_tokens) + _SOURCE_SEPARATOR


def build_messages(
    system_prompt: str, question: str, hits: Sequence[SearchHit], context_tokens: int, tokenizer: Tokenizer
) -> PromptBuild:
    sources = fit_sources(hits, context_tokens, tokenizer) if context_tokens > 0 else []
    user = f"{_CONTEXT_HEADING}{''.join(sources)}Question: {question}" if sources else question
    messages = [{"role": "system", "content": system_prompt}, {"role": "user", "content": user}]
    prompt_tokens = sum(tokenizer.count(m["content"]) for m in messages)
    return PromptBuild(messages=messages, sources_used=len(sources), prompt_tokens=prompt_tokens)
