"""docent.citations: an answer's cited claims, and whether the sources they cite say them."""

import pytest

from docent.citations import CitationChecker, best_sentence, claims, containment, strip_citations
from docent.embedding.model import StaticTokenEmbedder, load_embedder
from docent.settings import EmbeddingSettings, GenerationSettings
from docent.types import Citation

SERVE = (
    "Ray Serve autoscales replicas based on the number of ongoing requests. "
    "Replicas are removed again when traffic drops."
)
DATA = "Ray Data reads Parquet files from S3. Datasets are split into blocks for parallel processing."
TUNE = "Ray Tune runs hyperparameter searches over many trials. Each trial trains the model with one configuration."
SOURCES = [SERVE, DATA, TUNE]
THRESHOLD = GenerationSettings().citation_threshold


@pytest.fixture(scope="module")
def static():
    """The checker's embedder in production: the extractive generator's static token vectors."""
    return StaticTokenEmbedder(load_embedder(EmbeddingSettings(device="cpu")))


@pytest.fixture(params=["lexical only", "with static vectors"])
def checker(request):
    embedder = request.getfixturevalue("static") if request.param == "with static vectors" else None
    return CitationChecker(embedder, THRESHOLD)


# --- claims ---------------------------------------------------------------------------------


def test_the_claim_is_the_sentence_before_its_marks_without_them():
    found = claims("Ray is a framework for scaling Python. Ray Serve scales replicas with traffic [1].")

    assert [(c.text, c.sources) for c in found] == [("Ray Serve scales replicas with traffic", (1,))]


def test_marks_before_or_after_the_period_cite_the_same_sentence():
    before = claims("Ray Serve scales replicas with traffic [1]. Ray Data reads Parquet files [2].")
    after = claims("Ray Serve scales replicas with traffic. [1] Ray Data reads Parquet files. [2]")

    assert [c.sources for c in before] == [(1,), (2,)] == [c.sources for c in after]
    for b, a in zip(before, after):
        assert strip_citations(a.text).rstrip(".") == b.text


@pytest.mark.parametrize(
    "answer",
    [
        "Ray scales to clusters [1][3].",
        "Ray scales to clusters [1, 3].",
        "Ray scales to clusters [1] [3].",
        "Ray scales to clusters [1,3].",
    ],
)
def test_every_way_of_citing_two_sources_cites_both(answer):
    assert [(c.text, c.sources) for c in claims(answer)] == [("Ray scales to clusters", (1, 3))]


def test_a_source_cited_twice_for_one_claim_counts_once():
    assert claims("Ray scales to clusters [2][2].")[0].sources == (2,)


def test_each_list_item_is_its_own_claim():
    answer = "To run a cluster:\n- Install Ray on every node [1]\n- Start the head node with ray start [2]"

    assert [(c.text, c.sources) for c in claims(answer)] == [
        ("Install Ray on every node", (1,)),
        ("Start the head node with ray start", (2,)),
    ]


def test_brackets_inside_a_code_block_are_no_citations():
    answer = (
        "Index the results list:\n\n```python\nfirst = results[0]\nsecond = results[1]\n```\n\nThen print them [2]."
    )
    found = claims(answer)

    assert [(c.text, c.sources) for c in found] == [("Then print them", (2,))]
    assert all("results" not in c.text for c in found)


def test_an_answer_without_citations_has_no_claims_and_no_checked_citations():
    answer = "Ray Serve scales replicas with traffic. It also removes them."
    assert claims(answer) == []
    assert CitationChecker(None, THRESHOLD).check(answer, SOURCES) == []
    assert CitationChecker(None, THRESHOLD).check("", SOURCES) == []


def test_an_index_inside_inline_code_is_no_citation():
    answer = "Access the first result with `results[0]` after the call returns [2]."

    found = claims(answer)
    assert [c.sources for c in found] == [(2,)]
    assert found[0].text.startswith("Access the first result")


def test_an_abbreviation_does_not_end_the_claim():
    assert claims("Ray supports many accelerators, e.g. GPUs and TPUs [1].")[0].text == (
        "Ray supports many accelerators, e.g. GPUs and TPUs"
    )


# --- support -----------------------------------------------------------------------------------


def test_a_verbatim_quote_cited_to_its_source_is_supported_with_a_near_full_score(checker):
    (citation,) = checker.check("Ray Serve autoscales replicas based on the number of ongoing requests [1].", SOURCES)

    assert isinstance(citation, Citation)
    assert citation.sentence == "Ray Serve autoscales replicas based on the number of ongoing requests"
    assert citation.sources == [1]
    # Every word is in the source; with vectors, the claim's best sentence is itself (cosine ≈ 1).
    assert citation.score >= 0.99 and citation.supported


def test_the_same_claim_cited_to_an_unrelated_source_is_unsupported(checker):
    (citation,) = checker.check("Ray Serve autoscales replicas based on the number of ongoing requests [2].", SOURCES)

    assert not citation.supported
    assert citation.score < THRESHOLD


def test_swapping_the_numbers_flips_support(checker):
    right = checker.check("Ray Serve autoscales replicas [1]. Ray Data reads Parquet files from S3 [2].", SOURCES)
    swapped = checker.check("Ray Serve autoscales replicas [2]. Ray Data reads Parquet files from S3 [1].", SOURCES)

    assert [c.supported for c in right] == [True, True]
    assert [c.supported for c in swapped] == [False, False]
    assert [c.sentence for c in right] == [c.sentence for c in swapped]


def test_a_claim_citing_two_sources_is_supported_only_if_both_say_it(checker):
    both_say_it = [SERVE, "Replicas are added by Ray Serve as ongoing requests grow: Serve autoscales replicas."]
    claim = "Ray Serve autoscales replicas based on ongoing requests [1][2]."

    assert checker.check(claim, both_say_it)[0].supported
    one_says_it = checker.check(claim, [SERVE, DATA])[0]
    alone = checker.check("Ray Serve autoscales replicas based on ongoing requests [2].", [SERVE, DATA])[0]
    assert not one_says_it.supported
    assert one_says_it.score == alone.score, "a claim scores as its least supportive source"


@pytest.mark.parametrize("number", [0, 4, 99])
def test_a_number_naming_no_source_is_unsupported_with_score_zero(checker, number):
    (citation,) = checker.check(
        f"Ray Serve autoscales replicas based on the number of ongoing requests [{number}].", SOURCES
    )
    assert citation.sources == [number]
    assert citation.score == 0.0 and not citation.supported


def test_an_out_of_range_number_beside_a_good_source_still_fails_the_claim(checker):
    (citation,) = checker.check(
        "Ray Serve autoscales replicas based on the number of ongoing requests [1][7].", SOURCES
    )
    assert citation.sources == [1, 7]
    assert citation.score == 0.0 and not citation.supported


def test_a_number_naming_no_source_is_unsupported_whatever_the_threshold():
    (citation,) = CitationChecker(None, 0.0).check("Ray Serve autoscales replicas [5].", SOURCES)
    assert not citation.supported


def test_support_is_score_at_least_the_threshold():
    claim = "Ray Serve autoscales replicas [1]."  # every content word is in source 1: score 1.0
    assert CitationChecker(None, 1.0).check(claim, SOURCES)[0].supported
    half = "Ray Serve autoscales pods across zones [1]."
    score = CitationChecker(None, 0.0).check(half, SOURCES)[0].score
    assert 0 < score < 1
    assert CitationChecker(None, score).check(half, SOURCES)[0].supported
    assert not CitationChecker(None, min(1.0, score + 0.01)).check(half, SOURCES)[0].supported


def test_with_vectors_a_score_is_the_mean_of_containment_and_the_best_sentence_similarity(static):
    answer = (
        "Serve adds more replicas when many requests are in flight [1]. "
        "Parquet data is loaded from object storage [2]. Trials try hyperparameters [3]. Ray Data splits datasets [1]."
    )
    lexical = CitationChecker(None, THRESHOLD).check(answer, SOURCES)
    semantic = CitationChecker(static, THRESHOLD).check(answer, SOURCES)

    assert [c.sentence for c in lexical] == [c.sentence for c in semantic]
    for with_vectors, words_only in zip(semantic, lexical):
        # the mean lies between containment and a cosine of at most 1
        assert words_only.score / 2 - 0.001 <= with_vectors.score <= (words_only.score + 1) / 2 + 0.001


def test_a_paraphrase_scores_higher_against_its_source_than_against_an_unrelated_one(static):
    checker = CitationChecker(static, THRESHOLD)
    paraphrase = "Serve adds more replicas when many requests are in flight"

    own = checker.check(f"{paraphrase} [1].", SOURCES)[0].score
    assert own > checker.check(f"{paraphrase} [2].", SOURCES)[0].score
    assert own > checker.check(f"{paraphrase} [3].", SOURCES)[0].score


def test_citations_come_in_the_answer_order_with_their_numbers():
    answer = "Ray Data reads Parquet files [2]. Ray Tune runs trials [3]. Serve autoscales replicas [1]."
    found = CitationChecker(None, THRESHOLD).check(answer, SOURCES)

    assert [c.sources for c in found] == [[2], [3], [1]]
    assert all("[" not in c.sentence for c in found)


# --- containment and snippets ----------------------------------------------------------------


def test_containment_is_the_share_of_content_words_the_source_has():
    assert containment("Ray Serve autoscales replicas", "Ray Serve") == pytest.approx(0.5)
    assert containment("Ray Serve autoscales replicas", SERVE) == 1.0
    assert containment("Ray Serve autoscales replicas", "Datasets are blocks.") == 0.0


def test_containment_ignores_stopwords_and_word_forms():
    assert containment("the replicas of the deployment", "replica deployments") == 1.0
    assert containment("scaling replicas", "It scales a replica.") == 1.0
    assert containment("the of and", "anything") == 1.0  # no content words: nothing to contradict


def test_best_sentence_is_the_source_sentence_sharing_most_words_with_the_claim():
    source = "Ray Data is a library for data processing. It reads Parquet files from S3. It also writes CSV files."

    assert best_sentence("Parquet files are read from S3", source) == "It reads Parquet files from S3."
    assert best_sentence("writing CSV", source) == "It also writes CSV files."
