import re

import pytest

from docent.tokenizer import load_tokenizer
from docent.types import SearchHit
from services.generator.prompt import MIN_TRUNCATED_SOURCE_TOKENS, build_messages, source_header

SYSTEM = "Answer from the sources; cite them like [1]."
QUESTION = "How does Ray Serve autoscale replicas?"
BIG_BUDGET = 100_000


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


def hit(rank: int, text: str, page: str = "Ray Serve", section: str = "Autoscaling") -> SearchHit:
    return SearchHit(
        rank=rank, score=1.0, source=f"https://docs.ray.io/en/master/serve/p{rank}.html#s{rank}",
        text=text, chunk_id=rank, page_title=page, section_title=section,
    )


HITS = [
    hit(1, "Ray Serve adds replicas when the number of ongoing requests per replica grows past the target."),
    hit(2, "Replicas are removed again after traffic drops and the downscale delay has passed.", section="Downscaling"),
    hit(3, " ".join(f"Sentence {i} about the autoscaling policy and its many knobs." for i in range(40))),
]


def user_message(build) -> str:
    assert [m["role"] for m in build.messages] == ["system", "user"]
    return build.messages[1]["content"]


def context_block(build) -> str:
    """The user message less the question ("" when it is the question alone)."""
    before, separator, _ = user_message(build).rpartition("Question: ")
    return before if separator else ""


def context_tokens(hits, tokenizer) -> int:
    """Tokens of the context block when all of `hits` fit."""
    return tokenizer.count(context_block(build_messages(SYSTEM, QUESTION, hits, BIG_BUDGET, tokenizer)))


def test_sources_are_numbered_in_hit_order_before_the_question(tokenizer):
    build = build_messages(SYSTEM, QUESTION, HITS, BIG_BUDGET, tokenizer)
    user = user_message(build)

    assert build.messages[0]["content"] == SYSTEM
    assert build.sources_used == 3
    for number, h in enumerate(HITS, start=1):
        assert f"[{number}] {h.page_title} > {h.section_title} ({h.source})\n{h.text}" in user
    assert user.index("[1] ") < user.index("[2] ") < user.index("[3] ") < user.index(QUESTION)
    assert user.endswith(QUESTION)
    assert build.prompt_tokens == tokenizer.count(SYSTEM) + tokenizer.count(user)


def test_a_title_is_not_repeated_and_a_missing_one_is_left_out():
    assert source_header(1, hit(1, "x", page="Serve", section="Serve")) == f"[1] Serve ({hit(1, 'x').source})"
    assert source_header(2, hit(2, "x", page="", section="")) == f"[2] {hit(2, 'x').source}"


def test_whole_sources_are_kept_while_they_fit(tokenizer):
    two_sources = context_tokens(HITS[:2], tokenizer)
    build = build_messages(SYSTEM, QUESTION, HITS, two_sources, tokenizer)

    assert build.sources_used == 2
    assert user_message(build) == user_message(build_messages(SYSTEM, QUESTION, HITS[:2], BIG_BUDGET, tokenizer))


def test_the_first_source_that_does_not_fit_is_cut_to_the_tokens_left(tokenizer):
    two_sources = context_tokens(HITS[:2], tokenizer)
    budget = two_sources + tokenizer.count(source_header(3, HITS[2])) + 3 * MIN_TRUNCATED_SOURCE_TOKENS
    build = build_messages(SYSTEM, QUESTION, HITS, budget, tokenizer)
    cut_text = context_block(build).split(source_header(3, HITS[2]) + "\n", 1)[1].strip()

    assert build.sources_used == 3
    assert HITS[2].text.startswith(cut_text) and len(cut_text) < len(HITS[2].text)
    assert budget - 2 <= tokenizer.count(context_block(build)) <= budget  # the space left is used


def test_a_source_with_too_little_room_left_is_dropped(tokenizer):
    two_sources = context_tokens(HITS[:2], tokenizer)
    budget = two_sources + tokenizer.count(source_header(3, HITS[2])) + MIN_TRUNCATED_SOURCE_TOKENS // 2
    build = build_messages(SYSTEM, QUESTION, HITS, budget, tokenizer)

    assert build.sources_used == 2
    assert "[3]" not in user_message(build)


@pytest.mark.parametrize("budget", [1, 10, 40, 75, 120, 200, 333, 500])
def test_the_context_never_exceeds_its_budget(tokenizer, budget):
    build = build_messages(SYSTEM, QUESTION, HITS, budget, tokenizer)
    assert tokenizer.count(context_block(build)) <= budget
    assert len(re.findall(r"^\[\d+\] ", context_block(build), flags=re.MULTILINE)) == build.sources_used


def test_budget_zero_sends_the_question_alone(tokenizer):
    build = build_messages(SYSTEM, QUESTION, HITS, 0, tokenizer)

    assert build.sources_used == 0
    assert user_message(build) == QUESTION
    assert build.prompt_tokens == tokenizer.count(SYSTEM) + tokenizer.count(QUESTION)


def test_truncation_keeps_the_original_text_and_counts_without_special_tokens(tokenizer):
    text = "Ray Serve's AutoScaling: ÉLAN and café — replicas grow."
    cut = tokenizer.truncate(text, 5)

    assert text.startswith(cut) and tokenizer.count(cut) == 5
    assert tokenizer.truncate(text, 10_000) == text
    assert tokenizer.count("") == 0
