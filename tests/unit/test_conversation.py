"""Follow-ups made to stand alone offline, the condensing prompt and reply, and chat messages read as a conversation."""

from __future__ import annotations

import pytest

from docent.conversation import condense_offline, refers_back
from docent.settings import Settings
from docent.types import Role, SearchHit, Source, Turn
from services.gateway.conversation import OFFLINE, Condenser, clean_standalone, condense_messages
from services.gateway.openai_chat import ChatRequest, ChatRequestError, query_request, sources_list, without_sources
from services.gateway.pipeline import interleaved

FIRST = "How do I create a Ray actor?"
HISTORY = [Turn(role=Role.USER, content=FIRST), Turn(role=Role.ASSISTANT, content="Decorate a class with @ray.remote [1].")]


@pytest.mark.parametrize("follow_up", [
    "and how do I kill it?",
    "What about GPUs?",
    "how about on Kubernetes?",
    "Can they share a GPU?",
    "why?",
    "Is there an async version of that?",
    "Also, how do I name one?",
    "what are its limits?",
])
def test_follow_ups_that_lean_on_the_conversation_refer_back(follow_up):
    assert refers_back(follow_up)
    assert condense_offline(follow_up, HISTORY) == f"{follow_up} (about: {FIRST})"


@pytest.mark.parametrize("question", [
    "How do I configure the number of replicas of a Ray Serve deployment?",
    "What is a placement group?",
    "How do I use `ray.get` with a timeout?",
    "Does Ray Data support reading Parquet files from S3?",
    "How can I set num_cpus for a task?",
    "Which metrics does the Ray dashboard show for each node?",
])
def test_questions_that_stand_alone_are_left_alone(question):
    assert not refers_back(question)
    assert condense_offline(question, HISTORY) == question


def test_a_pronoun_anywhere_refers_back_even_in_a_question_that_names_its_subject():
    # Searched both ways by the gateway (interleaved hits): naming its subject, it keeps its own hits.
    assert refers_back("What does RLlib's PPO algorithm do with its learning rate?")


def _hit(chunk_id: int, page: int | None = None) -> SearchHit:
    page = chunk_id if page is None else page
    return SearchHit(rank=0, score=1.0, source=f"https://d/{page}.html#s{chunk_id}", text="t", chunk_id=chunk_id)


def test_the_hits_of_both_searches_are_taken_in_turn_each_chunk_once_as_many_as_the_first():
    merged = interleaved([_hit(1), _hit(2), _hit(3), _hit(4)], [_hit(2), _hit(5)], per_page=1)
    assert [h.chunk_id for h in merged] == [1, 2, 5, 3]
    assert [h.rank for h in merged] == [1, 2, 3, 4]
    assert [h.chunk_id for h in interleaved([_hit(1)], [], per_page=1)] == [1]


def test_interleaving_keeps_the_page_limit_each_search_kept():
    # the second search found page 1 through another chunk (9): it would crowd out page 3
    first, second = [_hit(1), _hit(2), _hit(3)], [_hit(9, page=1), _hit(4)]
    assert [h.chunk_id for h in interleaved(first, second, per_page=1)] == [1, 2, 4]
    assert [h.chunk_id for h in interleaved(first, second, per_page=0)] == [1, 9, 2]


def test_a_chain_of_follow_ups_keeps_the_last_question_and_the_first():
    first = [Turn(role=Role.USER, content="What does job_timeout do?")]
    second = condense_offline("and what happens then?", first)
    third = condense_offline("why?", [Turn(role=Role.USER, content=second)])
    fourth = condense_offline("and then?", [Turn(role=Role.USER, content=third)])
    assert third == "why? (about: and what happens then?; What does job_timeout do?)"
    assert fourth == "and then? (about: why?; What does job_timeout do?)"


def test_without_history_nothing_is_condensed():
    assert condense_offline("and how do I kill it?", []) == "and how do I kill it?"


def test_the_subject_is_the_last_question_asked():
    turns = [*HISTORY, Turn(role=Role.USER, content="How do I stop a Ray job?"), Turn(role=Role.ASSISTANT, content="ok")]
    assert condense_offline("and restart it?", turns).endswith("(about: How do I stop a Ray job?)")


async def test_the_offline_condenser_is_used_without_an_llm_and_times_itself():
    condenser = Condenser(Settings())
    condensed = await condenser.condense("and how do I kill it?", HISTORY)
    assert condensed.by == OFFLINE and condensed.rewritten and condensed.cost == 0
    alone = await condenser.condense("and how do I kill it?", [])
    assert alone.by == "" and not alone.rewritten


def test_the_condensing_prompt_holds_the_transcript_cut_to_size_and_the_question():
    messages = condense_messages("Rewrite.", "and then?", HISTORY, max_turn_chars=10)
    assert messages[0] == {"role": "system", "content": "Rewrite."}
    assert messages[1]["content"] == "Conversation:\nUser: How do I c\nAssistant: Decorate a\n\nLast question: and then?"


@pytest.mark.parametrize(("reply", "cleaned"), [
    ("How do I kill a Ray actor?", "How do I kill a Ray actor?"),
    ('Standalone question: "How do I kill a Ray actor?"\nThis replaces "it".', "How do I kill a Ray actor?"),
    ("  \n`How do I kill a Ray actor?`  ", "How do I kill a Ray actor?"),
    ("", None),
    ("Question: ", None),
    ("x" * 5000, None),
])
def test_an_llms_reply_is_cleaned_to_one_question_or_refused(reply, cleaned):
    assert clean_standalone(reply, max_chars=1000) == cleaned


def _chat(*messages: tuple[str, object]) -> ChatRequest:
    return ChatRequest.model_validate({"model": "ray", "messages": [{"role": r, "content": c} for r, c in messages]})


def test_chat_messages_are_the_question_and_its_history():
    answer = "Decorate a class [1].\n\n**Sources**\n\n- [1] [Actors](https://docs.ray.io/actors.html)"
    request = query_request(_chat(
        ("system", "Be brief."), ("user", FIRST), ("assistant", answer),
        ("user", [{"type": "text", "text": "and how do I "}, {"type": "text", "text": "kill it?"}]),
    ))
    assert request.query == "and how do I kill it?" and request.index == "ray"
    assert [t.role for t in request.history] == [Role.USER, Role.ASSISTANT]
    assert request.history[1].content == "Decorate a class [1]."  # docent's own source list is not history


@pytest.mark.parametrize(("messages", "field"), [
    ((("user", FIRST), ("assistant", "ok")), "messages.1.role"),
    ((("user", "   "),), "messages.0.content"),
    ((("user", [{"type": "image_url", "image_url": {"url": "x"}}]),), "messages.0.content"),
    ((("critic", "hm"), ("user", FIRST)), "messages.0.role"),
])
def test_chat_requests_docent_cannot_answer_name_the_field(messages, field):
    with pytest.raises(ChatRequestError) as error:
        query_request(_chat(*messages))
    assert error.value.field == field and error.value.http_status == 422


def test_the_sources_list_names_the_cited_sources_by_their_numbers():
    sources = [
        Source(number=n, source=f"https://d/{n}.html", title=f"Page {n}", text="t", score=1.0, cited=n != 2)
        for n in (1, 2, 3)
    ]
    listed = sources_list(sources)
    assert listed == "\n\n**Sources**\n\n- [1] [Page 1](https://d/1.html)\n- [3] [Page 3](https://d/3.html)"
    assert without_sources("Answer [1]." + listed) == "Answer [1]."
    assert sources_list([s.model_copy(update={"cited": False}) for s in sources]) == ""
