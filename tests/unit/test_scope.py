"""docent.scope: the signals of a retrieval, the calibrated scope model, and answers that say "not covered"."""

import math

import numpy as np
import pytest
from pydantic import ValidationError

from docent.lexical import LexicalIndex
from docent.scope import (
    FEATURES,
    CalibrationError,
    ScopeFeatures,
    ScopeModel,
    fit_scope,
    names,
    says_not_covered,
    scope_features,
)
from docent.settings import AbstentionSettings, LexicalSettings
from docent.types import SearchHit

CHUNKS = [
    "Ray Serve autoscales replicas based on ongoing requests.",
    "Ray Data reads Parquet files from S3.",
    "Deploy Ray on Kubernetes with KubeRay.",
    "Ray Tune runs hyperparameter searches.",
]
NOT_COVERED = AbstentionSettings().answer


@pytest.fixture(scope="module")
def vocabulary() -> LexicalIndex:
    return LexicalIndex.build(list(range(1, len(CHUNKS) + 1)), CHUNKS, LexicalSettings())


def hit(rank: int, text: str, similarity: float | None) -> SearchHit:
    return SearchHit(
        rank=rank,
        score=1.0,
        similarity=similarity,
        source=f"https://docs.example/p{rank}.html",
        text=text,
        chunk_id=rank,
    )


def features(best=0.5, top=0.5, unknown=0.0, uncovered=0.0, names_=0.0) -> ScopeFeatures:
    return ScopeFeatures(best, top, unknown, uncovered, names_)


# --- names ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("what is an actor", []),
        ("How do I use Ray Serve with FastAPI?", ["Ray", "Serve", "FastAPI"]),
        ("Does Ray support PBS Pro?", ["Ray", "PBS", "Pro"]),
        ("Can I run vLLM behind an SSLContext?", ["vLLM", "SSLContext"]),
        ("Ray on Nomad", ["Nomad"]),  # a capitalised first word is no name…
        ("HIPAA compliance of ray clusters", ["HIPAA"]),  # …unless it is an acronym
        ("is it struggling with many replicas", []),
    ],
)
def test_names_are_capitalised_words_past_the_first_acronyms_and_camel_case(question, expected):
    assert names(question) == expected


# --- scope_features -------------------------------------------------------------------------------


def test_similarity_signals_are_the_best_and_the_mean_of_the_top_three(vocabulary):
    hits = [hit(1, CHUNKS[0], 0.4), hit(2, CHUNKS[2], 0.8), hit(3, CHUNKS[3], 0.6), hit(4, CHUNKS[1], 0.2)]
    found = scope_features("Ray Serve autoscales replicas", hits, vocabulary)

    assert found.best_similarity == pytest.approx(0.8)
    assert found.top_similarity == pytest.approx((0.8 + 0.6 + 0.4) / 3)


def test_bm25_only_hits_count_as_similarity_zero_and_no_hits_as_nothing_found(vocabulary):
    only_lexical = scope_features(
        "Ray Serve autoscales replicas", [hit(1, CHUNKS[0], None), hit(2, CHUNKS[1], 0.3)], vocabulary
    )
    assert only_lexical.best_similarity == pytest.approx(0.3)
    assert only_lexical.top_similarity == pytest.approx(0.15)

    nothing = scope_features("Ray Serve autoscales replicas", [], vocabulary)
    assert nothing.best_similarity == 0.0 and nothing.top_similarity == 0.0
    assert nothing.uncovered_terms == 1.0, "no retrieved chunk contains any of its words"
    assert nothing.unknown_terms == 0.0, "the index knows them all"


def test_a_question_in_the_index_words_has_no_unknown_terms_or_names(vocabulary):
    question = "Ray Serve autoscales replicas based on ongoing requests"
    found = scope_features(question, [hit(1, CHUNKS[0], 0.9)], vocabulary)

    assert found.unknown_terms == 0.0
    assert found.uncovered_terms == 0.0
    assert found.unknown_names == 0.0


def test_another_products_name_is_an_unknown_term_and_an_unknown_name(vocabulary):
    hits = [hit(1, CHUNKS[2], 0.7)]
    known = scope_features("Deploy Ray on Kubernetes with KubeRay", hits, vocabulary)
    other = scope_features("Deploy Ray on Kubernetes with Nomad", hits, vocabulary)

    assert known.unknown_names == 0.0
    assert other.unknown_names == 1.0
    assert other.unknown_terms > known.unknown_terms
    assert other.uncovered_terms > known.uncovered_terms


def test_an_unknown_lower_case_word_is_an_unknown_term_but_no_unknown_name(vocabulary):
    found = scope_features("Ray Serve autoscales replicas struggling", [hit(1, CHUNKS[0], 0.7)], vocabulary)

    assert 0 < found.unknown_terms < 1
    assert found.unknown_names == 0.0


def test_words_the_index_has_but_the_hits_lack_are_uncovered_not_unknown(vocabulary):
    found = scope_features("Ray Tune hyperparameter searches", [hit(1, CHUNKS[1], 0.5)], vocabulary)

    assert found.unknown_terms == 0.0
    assert found.uncovered_terms > 0.5  # only "ray" is in the Ray Data chunk


def test_without_a_vocabulary_the_vocabulary_signals_are_zero():
    found = scope_features("Deploy Ray on Nomad with HIPAA", [hit(1, CHUNKS[2], 0.7)], None)

    assert found.unknown_terms == 0.0 and found.unknown_names == 0.0
    assert found.uncovered_terms > 0  # needs only the hits


def test_a_minimal_vocabulary_object_is_enough():
    class Knows:
        def __init__(self, words):
            self.words = words

        def unknown_share(self, text):
            return 0.25

        def knows(self, word):
            return word in self.words

    question = "Does Ray run on Nomad?"
    assert scope_features(question, [], Knows({"Ray", "Nomad"})).unknown_names == 0.0
    assert scope_features(question, [], Knows({"Ray"})).unknown_names == 1.0
    assert scope_features(question, [], Knows({"Ray"})).unknown_terms == 0.25


# --- ScopeModel -------------------------------------------------------------------------------------


def test_the_score_is_the_weighted_sum_plus_bias_and_the_threshold_is_inclusive():
    model = ScopeModel(weights=[1.0, 2.0, -3.0, -4.0, -5.0], bias=0.5, threshold=1.0)
    f = features(best=0.9, top=0.7, unknown=0.1, uncovered=0.2, names_=0.0)
    expected = 0.9 * 1 + 0.7 * 2 - 0.1 * 3 - 0.2 * 4 - 0 * 5 + 0.5

    assert model.score(f) == pytest.approx(expected)
    assert model.in_scope(f) is (expected >= 1.0)
    at_threshold = ScopeModel(weights=model.weights, bias=model.bias, threshold=model.score(f))
    assert at_threshold.in_scope(f)
    assert not ScopeModel(weights=model.weights, bias=model.bias, threshold=model.score(f) + 1e-9).in_scope(f)


def test_the_uncalibrated_model_uses_the_best_similarity_alone():
    model = ScopeModel.similarity_only(0.35)

    assert model.in_scope(features(best=0.35, top=0.0, unknown=1.0, uncovered=1.0, names_=1.0))
    assert model.in_scope(features(best=0.9))
    assert not model.in_scope(features(best=0.34, top=0.9, unknown=0.0, uncovered=0.0, names_=0.0))


def test_a_model_needs_one_weight_per_feature():
    with pytest.raises(ValidationError):
        ScopeModel(weights=[1.0] * (len(FEATURES) - 1), bias=0.0, threshold=0.0)
    with pytest.raises(ValidationError):
        ScopeModel(weights=[1.0] * (len(FEATURES) + 1), bias=0.0, threshold=0.0)


def test_a_stored_model_gives_the_same_verdicts():
    model = ScopeModel(
        weights=[2.0, 1.0, -1.5, -0.5, -2.0], bias=-0.3, threshold=0.4, calibration={"method": "logistic"}
    )
    loaded = ScopeModel.model_validate_json(model.model_dump_json())
    rng = np.random.default_rng(3)
    for values in rng.uniform(0, 1, size=(50, len(FEATURES))):
        f = ScopeFeatures(*map(float, values))
        assert loaded.in_scope(f) == model.in_scope(f) and loaded.score(f) == model.score(f)


# --- fit_scope ----------------------------------------------------------------------------------------


def synthetic(
    n: int, best: float, unknown: float, names_share: float, rng, spread: float = 0.08
) -> list[ScopeFeatures]:
    found = []
    for _ in range(n):
        b = float(np.clip(rng.normal(best, spread), -1, 1))
        found.append(
            ScopeFeatures(
                best_similarity=b,
                top_similarity=b - abs(float(rng.normal(0.05, 0.02))),
                unknown_terms=float(np.clip(rng.normal(unknown, 0.05), 0, 1)),
                uncovered_terms=float(rng.uniform(0, 0.5)),
                unknown_names=float(rng.random() < names_share),
            )
        )
    return found


def separable(seed: int = 0):
    rng = np.random.default_rng(seed)
    return synthetic(60, 0.75, 0.05, 0.0, rng, spread=0.04), synthetic(40, 0.25, 0.5, 1.0, rng, spread=0.04)


def overlapping(seed: int):
    rng = np.random.default_rng(seed)
    return synthetic(50, 0.6, 0.1, 0.1, rng), synthetic(40, 0.45, 0.3, 0.6, rng)


def test_separable_data_is_separated_with_no_in_scope_question_abstained():
    inside, outside = separable()
    model = fit_scope(inside, outside, max_in_scope_abstained=0.0, regularisation=1.0)

    assert model.calibration["in_scope_abstained"] == 0.0
    assert model.calibration["out_of_scope_abstained"] == 1.0
    assert not any(model.in_scope(f) for f in outside)
    # similarity speaks for a question, unknown words and names against it
    weights = dict(zip(FEATURES, model.weights))
    assert weights["best_similarity"] > 0 and weights["unknown_terms"] < 0 and weights["unknown_names"] < 0


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("target", [0.0, 0.03, 0.1, 0.25])
def test_the_threshold_abstains_on_as_many_in_scope_questions_as_allowed_and_no_more(seed, target):
    inside, outside = overlapping(seed)
    model = fit_scope(inside, outside, max_in_scope_abstained=target, regularisation=1.0)

    abstained = model.calibration["in_scope_abstained"]
    assert abstained <= target
    # the largest such threshold: the scores are distinct, so exactly floor(target * n) fall below it
    assert abstained == pytest.approx(math.floor(target * len(inside)) / len(inside))
    assert (model.calibration["in_scope"], model.calibration["out_of_scope"]) == (len(inside), len(outside))


@pytest.mark.parametrize("seed", range(5))
def test_a_larger_share_allowed_abstains_on_more_out_of_scope_questions(seed):
    inside, outside = overlapping(seed)
    fitted = [fit_scope(inside, outside, target, 1.0) for target in (0.0, 0.1, 0.25, 0.5)]

    assert [m.threshold for m in fitted] == sorted(m.threshold for m in fitted)
    shares = [m.calibration["out_of_scope_abstained"] for m in fitted]
    assert shares == sorted(shares)


def test_the_stored_model_abstains_on_no_more_in_scope_fitting_questions_than_allowed():
    over = []
    for seed in range(10):
        inside, outside = overlapping(seed)
        for target in (0.0, 0.03, 0.1, 0.25):
            model = fit_scope(inside, outside, target, 1.0)
            share = float(np.mean([not model.in_scope(f) for f in inside]))
            if share > target:
                over.append((seed, target, share))
    assert over == []


def test_calibration_needs_both_kinds_of_question():
    inside, outside = separable()
    for kept_in, kept_out in [([], []), (inside, []), ([], outside)]:
        with pytest.raises(CalibrationError):
            fit_scope(kept_in, kept_out, 0.03, 1.0)
    assert issubclass(CalibrationError, ValueError)


# --- says_not_covered --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        NOT_COVERED,
        NOT_COVERED.replace("'", "’"),  # a curly apostrophe
        NOT_COVERED.lower().rstrip("."),
        "The provided sources do not mention Nomad.",
        "I don’t know.",
        "There is no information about PBS Pro in the context.",
        "Unfortunately, the context doesn't provide details on Nomad.",
        "This is not covered in the provided documentation.",
        "I cannot find anything about HIPAA in the sources.",
        "",
    ],
)
def test_answers_saying_the_sources_do_not_answer_are_recognised(answer):
    assert says_not_covered(answer, NOT_COVERED)


@pytest.mark.parametrize(
    "answer",
    [
        "Ray Serve scales the number of replicas with the ongoing requests [1].",
        "You cannot find this in the UI; use the CLI [2].",
        "Ray Serve scales replicas [1]. The sources do not mention GPUs for the proxy.",  # not the opening
        "Serve does not support gRPC streaming in this version [2].",
    ],
)
def test_ordinary_cited_answers_are_not_taken_for_not_covered(answer):
    assert not says_not_covered(answer, NOT_COVERED)


def test_the_configured_phrase_is_recognised_wherever_it_stands():
    phrase = "Sorry, the Ray docs have nothing on this."
    assert says_not_covered(f"Thanks for asking! {phrase}", phrase)
    assert not says_not_covered("Ray Serve scales replicas [1].", phrase)


@pytest.mark.parametrize(
    "answer",
    [
        "Ray Serve doesn't include a web UI of its own; use the Ray dashboard to watch deployments [1].",
        "Ray Data does not provide a SQL engine, so run the queries with Spark and read the results [2].",
    ],
)
def test_a_cited_answer_about_what_the_product_lacks_is_not_taken_for_not_covered(answer):
    assert not says_not_covered(answer, NOT_COVERED)
