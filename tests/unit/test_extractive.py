"""The offline generator: one contiguous, cited passage of the best source, code fenced and lists kept."""

import dataclasses
import re

import pytest

from docent.blocks import BlockKind, units
from docent.citations import CITATION_MARKS, claims
from docent.embedding.model import StaticTokenEmbedder, load_embedder
from docent.settings import EmbeddingSettings, GenerationSettings
from docent.types import SearchHit
from services.generator.extractive import ExtractiveAnswer, ExtractiveGenerator, passage_settings

FENCE = re.compile(r"```.*?```", re.DOTALL)
DEFAULTS = passage_settings(GenerationSettings())


def hit(n: int, text: str, continuation: str = "") -> SearchHit:
    return SearchHit(
        rank=n, score=1.0, source=f"https://docs.example/p{n}.html", text=text, chunk_id=n, continuation=continuation
    )


@pytest.fixture(scope="module")
def minilm():
    return load_embedder(EmbeddingSettings(device="cpu"))


@pytest.fixture(scope="module")
def static(minilm):
    return StaticTokenEmbedder(minilm)


@pytest.fixture(scope="module")
def generator(static):
    """What `load_extractive` builds with the default settings (static token vectors)."""
    return ExtractiveGenerator(static, DEFAULTS)


def with_settings(embedder, **changes) -> ExtractiveGenerator:
    return ExtractiveGenerator(embedder, dataclasses.replace(DEFAULTS, **changes))


def words(text: str) -> str:
    return " ".join(text.split())


def outside_code(text: str) -> str:
    return FENCE.sub("", text)


def fenced(text: str) -> list[str]:
    return [block[3:-3].strip("\n") for block in FENCE.findall(text)]


def cited_numbers(text: str) -> list[int]:
    return [int(n) for marks in CITATION_MARKS.findall(outside_code(text)) for n in re.findall(r"\d+", marks)]


def assert_well_formed(answer: ExtractiveAnswer, hits: list[SearchHit]) -> None:
    """Properties every answer has: one citation per passage naming its source, none inside code, tokens add up."""
    assert "".join(answer.tokens()) == answer.text
    assert cited_numbers(answer.text) == [p.source_number for p in answer.passages]
    assert all(1 <= p.source_number <= len(hits) for p in answer.passages)
    assert all(not CITATION_MARKS.search(code) for code in fenced(answer.text))
    assert answer.text.count("```") % 2 == 0


SERVE = hit(
    1,
    "Ray Serve autoscales replicas based on the number of ongoing requests. "
    "The autoscaler adds replicas when the queue of requests grows long. "
    "Replicas are removed again when traffic drops.",
)
DATA = hit(
    2, "Ray Data reads Parquet files from S3 and other storage. Datasets are split into blocks for parallel processing."
)
TUNE = hit(
    3, "Ray Tune runs hyperparameter searches over many trials. Each trial trains the model with one configuration."
)


# --- which passage ------------------------------------------------------------------------------


@pytest.mark.parametrize("embedder_name", ["static", "minilm"])
@pytest.mark.parametrize(
    ("question", "hits", "source"),
    [
        ("When does Ray Serve add replicas?", [SERVE, DATA, TUNE], 1),
        ("How does Ray Data read Parquet files?", [SERVE, DATA, TUNE], 2),
        ("How does Ray Tune search hyperparameters?", [SERVE, DATA, TUNE], 3),
    ],
)
def test_the_passage_is_contiguous_text_of_the_relevant_source(request, embedder_name, question, hits, source):
    answer = ExtractiveGenerator(request.getfixturevalue(embedder_name), DEFAULTS).answer(question, hits)

    assert source in [p.source_number for p in answer.passages]
    if source == 1:
        assert [p.source_number for p in answer.passages] == [1]
    for passage in answer.passages:  # each passage is one stretch of its own source's text
        quoted = words(CITATION_MARKS.sub("", passage.markdown))
        assert quoted and quoted in words(hits[passage.source_number - 1].text)
    assert_well_formed(answer, hits)


def test_sentences_are_not_stitched_from_several_sources(generator):
    hits = [
        hit(1, "The autoscaler adds replicas when the queue of requests grows long. Ray Serve is built on Ray actors."),
        hit(2, "Ray Serve autoscaling is configured per deployment. Replicas are removed when traffic drops again."),
        hit(3, "Ray Serve replicas scale between min_replicas and max_replicas. Each replica is a Ray actor."),
    ]
    answer = generator.answer("How does Ray Serve autoscaling add and remove replicas?", hits)

    assert len(answer.passages) == 1
    (passage,) = answer.passages
    source_units = [u for u in units(hits[passage.source_number - 1].text) if u.kind != BlockKind.SKIP]
    n = len(passage.units)
    assert any(list(passage.units) == source_units[i : i + n] for i in range(len(source_units) - n + 1))
    assert_well_formed(answer, hits)


def test_the_first_source_wins_over_a_slightly_closer_later_one(static):
    question = "How do I set the number of CPUs for a Ray task?"
    first = "Set the num_cpus option of the ray.remote decorator to reserve CPUs for each task."
    third = "Set the number of CPUs for a Ray task with the num_cpus option of ray.remote."
    hits = [hit(1, first), DATA, hit(3, third)]
    q, one, three = static.embed([question, first, third])
    assert q @ three > q @ one, "premise: on similarity alone, source 3 is the better one"

    assert [p.source_number for p in with_settings(static, rank_weight=0.0).answer(question, hits).passages] == [3]
    answer = with_settings(static, rank_weight=DEFAULTS.rank_weight).answer(question, hits)
    assert [p.source_number for p in answer.passages] == [1]
    assert_well_formed(answer, hits)


def test_only_the_configured_number_of_sources_is_read(static):
    hits = [TUNE, SERVE, DATA]
    answer = with_settings(static, hits=1).answer("When does Ray Serve add replicas?", hits)
    assert [p.source_number for p in answer.passages] == [1]


def test_a_second_passage_comes_from_another_source_only_when_allowed(static):
    hits = [SERVE, DATA, TUNE]
    question = "How does Ray Serve add replicas and how does Ray Data read Parquet files?"

    assert len(with_settings(static, second_ratio=0.0, max_redundancy=-1.0).answer(question, hits).passages) == 1
    two = with_settings(static, second_ratio=0.0, max_redundancy=1.0).answer(question, hits)
    assert len(two.passages) == 2
    assert two.passages[0].source_number != two.passages[1].source_number
    assert two.text.split("\n\n") == [p.markdown for p in two.passages]
    assert_well_formed(two, hits)


def test_a_passage_stays_within_max_chars(static):
    text = " ".join(f"Ray Serve autoscaling adds replica number {i} when the request queue grows." for i in range(12))
    answer = with_settings(static, max_chars=200, keep_ratio=0.0).answer(
        "When does Ray Serve autoscaling add replicas?", [hit(1, text)]
    )

    (passage,) = answer.passages
    assert len(passage.units) > 1, "on-topic sentences after the best one join it…"
    assert sum(len(u.text) for u in passage.units if u.kind != BlockKind.CODE) <= 200, "…while they fit"


def test_a_best_sentence_referring_back_brings_the_one_before_it(generator):
    text = (
        "Ray Tune runs hyperparameter searches over many trials. "
        "Set max_concurrent_trials in the TuneConfig to limit parallel trials. "
        "This keeps the cluster from running out of GPU memory when each trial needs a large model."
    )
    answer = generator.answer(
        "How do I keep the cluster from running out of GPU memory with large models?", [hit(1, text)]
    )

    (passage,) = answer.passages
    texts = [u.text for u in passage.units]
    assert "This keeps the cluster from running out of GPU memory when each trial needs a large model." in texts
    assert texts[0] == "Set max_concurrent_trials in the TuneConfig to limit parallel trials."


def test_a_passage_never_opens_with_a_fragment_cut_by_the_chunker(generator):
    hits = [hit(1, "are started. This setting controls how many workers Ray starts on each node of the cluster.")]
    answer = generator.answer("How many workers does Ray start on each node?", hits)

    assert answer.text.startswith("This setting controls")


# --- code and lists -------------------------------------------------------------------------------


def test_a_sentence_introducing_code_brings_it_as_a_fenced_block(generator):
    hits = [
        hit(
            1,
            "To start a Ray cluster on your machine, run the following command:\n"
            "ray start --head --port=6379\n\n"
            "The command prints the address that worker nodes connect to.",
        )
    ]
    answer = generator.answer("How do I start a Ray cluster on my machine?", hits)

    assert fenced(answer.text) == ["ray start --head --port=6379"]
    before_code = answer.text.split("```")[0]
    assert before_code.strip().endswith("run the following command: [1]"), "cited after the sentence, outside the code"
    assert_well_formed(answer, hits)


def test_code_in_the_next_chunk_comes_with_the_sentence_that_ends_this_one(generator):
    text = "Ray runs on a laptop as well as on a cluster. To start a Ray cluster on your machine, run the following command:"
    continuation = "ray start --head --port=6379\n\nThe command prints the address that worker nodes connect to."
    hits = [hit(1, text, continuation=continuation)]
    answer = generator.answer("How do I start a Ray cluster on my machine?", hits)

    assert "run the following command:" in answer.text
    assert fenced(answer.text) == ["ray start --head --port=6379"]
    assert "prints the address" not in answer.text, "only the announced code comes from the next chunk"
    assert_well_formed(answer, hits)


@pytest.mark.parametrize("continuation", ["", "The command prints the address that worker nodes connect to."])
def test_a_sentence_announcing_code_that_is_missing_does_not_end_the_answer(generator, continuation):
    text = "Ray runs on a laptop as well as on a cluster. To start a Ray cluster on your machine, run the following command:"
    hits = [hit(1, text, continuation=continuation)]
    answer = generator.answer("How do I start a Ray cluster on my machine?", hits)

    assert answer.passages
    assert not strip_marks(answer.text).endswith(":")
    assert "```" not in answer.text
    assert_well_formed(answer, hits)


def test_a_sentence_announcing_a_list_keeps_the_list_and_cites_after_it(generator):
    hits = [
        hit(
            1,
            "Ray supports the following accelerators:\n- NVIDIA GPUs\n- AWS Trainium chips\n- Google TPUs\n\n"
            "Each node reports its accelerators when it starts.",
        )
    ]
    answer = generator.answer("Which accelerators does Ray support?", hits)

    lines = answer.text.split("\n")
    assert lines[0] == "Ray supports the following accelerators:"
    assert [line for line in lines if line.startswith("- ")] == [
        "- NVIDIA GPUs",
        "- AWS Trainium chips",
        "- Google TPUs [1]",
    ]
    assert_well_formed(answer, hits)


def test_long_code_is_cut_after_max_code_lines(static):
    body = "\n".join(f"    field_{i} = {i}" for i in range(30))
    hits = [
        hit(
            1,
            f"Define the counter actor class with the ray.remote decorator as follows:\n\n@ray.remote\nclass Counter:\n{body}",
        )
    ]
    answer = with_settings(static, max_code_lines=5).answer("How do I define the counter actor class?", hits)

    (code,) = fenced(answer.text)
    lines = code.split("\n")
    assert lines == ["@ray.remote", "class Counter:", "    field_0 = 0", "    field_1 = 1", "    field_2 = 2", "..."]
    assert_well_formed(answer, hits)


def test_code_within_max_code_lines_is_quoted_whole_with_its_indentation(generator):
    code = "@ray.remote\nclass Counter:\n    def __init__(self):\n        self.value = 0"
    hits = [hit(1, f"Define the counter actor class with the ray.remote decorator as follows:\n\n{code}")]
    answer = generator.answer("How do I define the counter actor class?", hits)

    assert fenced(answer.text) == [code]
    assert_well_formed(answer, hits)


def test_an_example_starting_with_a_lone_import_is_quoted_as_code(generator):
    text = (
        "Ray actors are stateful workers. Create an actor from a Python class with the ray.remote decorator:\n\n"
        "import ray\n\n@ray.remote\nclass Counter:\n    def __init__(self):\n        self.value = 0"
    )
    answer = generator.answer("How do I create an actor from a Python class?", [hit(1, text)])

    assert fenced(answer.text) == [
        "import ray\n\n@ray.remote\nclass Counter:\n    def __init__(self):\n        self.value = 0"
    ]


# --- nothing to quote ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "hits",
    [
        [],
        [hit(1, "short")],
        [hit(1, "Python\n\nimport ray\nray.init()"), hit(2, "| Name | Type |\n| --- | --- |\n| num_cpus | int |")],
        [hit(1, "and then the replicas are removed again when traffic drops")],
    ],
)
def test_no_quotable_text_gives_no_answer(generator, hits):
    answer = generator.answer("How does Ray Serve scale?", hits)

    assert answer.passages == []
    assert answer.text == ""
    assert list(answer.tokens()) == []


def test_the_answer_streams_as_tokens_that_add_up_to_it(generator):
    hits = [hit(1, 'Install Ray from PyPI with pip:\n\npip install -U "ray[default]"\n\nThe extra adds the dashboard.')]
    answer = generator.answer("How do I install Ray?", hits)

    tokens = list(answer.tokens())
    assert len(tokens) > 3
    assert "".join(tokens) == answer.text
    assert all(token.strip() for token in tokens), "no token is only whitespace"
    assert claims(answer.text) and all(c.sources == (1,) for c in claims(answer.text))


def strip_marks(text: str) -> str:
    return CITATION_MARKS.sub("", text).strip()
