"""Is a question within what an index's documentation covers? Abstention, calibrated per index.

Five signals of a retrieval, all known before any LLM is called:

- `best_similarity`: the question's cosine similarity to its closest chunk;
- `top_similarity`: the mean over its three closest chunks;
- `unknown_terms`: the share of the question's words (stemmed, stopwords out) that no
  chunk of the index contains — another product's names, a feature that doesn't exist;
- `uncovered_terms`: the share that none of the retrieved chunks contains;
- `unknown_names`: 1 when the question names something (a capitalised word past its
  first, an acronym, a CamelCase identifier) that no chunk mentions: "PBS Pro", "Nomad",
  "HIPAA". Lower-case words unknown to the index are more often a user's own words
  ("struggling") or typos than another product.

A `ScopeModel` weighs them (logistic regression) into one score; below its threshold the
question is out of scope and docent says so instead of answering. `docent calibrate` fits
the weights and the threshold for one index from questions it should answer and questions
it should not, keeping the share of in-scope questions abstained at a target; the model is
stored with the index. An uncalibrated index uses the best similarity alone against
`abstention.min_similarity`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import astuple, dataclass
from typing import Protocol

import numpy as np
from pydantic import BaseModel, Field

from docent.lexical import tokenize
from docent.settings import LexicalSettings
from docent.types import SearchHit

FEATURES = ("best_similarity", "top_similarity", "unknown_terms", "uncovered_terms", "unknown_names")
_TOP = 3  # chunks averaged in top_similarity
_DECIMALS = 6  # of the stored weights and threshold
_WORDS = LexicalSettings(stopwords=True, stemming=True)
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9.+-]*[A-Za-z0-9]")
_CAPITALS_OF_A_NAME = 2  # "JWT", "SSLContext", "vLLM"


@dataclass(frozen=True)
class ScopeFeatures:
    best_similarity: float
    top_similarity: float
    unknown_terms: float
    uncovered_terms: float
    unknown_names: float

    def vector(self) -> np.ndarray:
        return np.asarray(astuple(self), dtype=np.float64)


class Vocabulary(Protocol):
    """What the index's words are (its BM25 index)."""

    def unknown_share(self, text: str) -> float: ...

    def knows(self, word: str) -> bool: ...


def names(question: str) -> list[str]:
    """The words of the question that look like names: capitalised past the first word, acronyms, CamelCase."""
    words = _WORD.findall(question)
    return [w for i, w in enumerate(words) if (i > 0 and w[0].isupper()) or sum(c.isupper() for c in w) >= _CAPITALS_OF_A_NAME]


def scope_features(question: str, hits: Sequence[SearchHit], vocabulary: Vocabulary | None) -> ScopeFeatures:
    """The signals of one retrieval; BM25-only hits (no similarity) count as similarity 0.

    Without a vocabulary (an index without BM25), the two signals that need one are 0."""
    similarities = sorted((h.similarity or 0.0 for h in hits), reverse=True) or [0.0]
    words = set(tokenize(question, _WORDS))
    found: set[str] = set()
    for hit in hits:
        found.update(tokenize(hit.text, _WORDS))
    uncovered = len(words - found) / len(words) if words else 0.0
    return ScopeFeatures(
        best_similarity=similarities[0],
        top_similarity=float(np.mean(similarities[:_TOP])),
        unknown_terms=vocabulary.unknown_share(question) if vocabulary else 0.0,
        uncovered_terms=uncovered,
        unknown_names=float(any(not vocabulary.knows(name) for name in names(question))) if vocabulary else 0.0,
    )


class ScopeModel(BaseModel):
    """score = weights · features + bias; a question scoring below `threshold` is out of scope."""

    weights: list[float] = Field(min_length=len(FEATURES), max_length=len(FEATURES))
    bias: float
    threshold: float
    calibration: dict[str, float | int | str] = Field(
        default_factory=dict, description="how it was fitted: set sizes, target, shares abstained on the fitting data"
    )

    @classmethod
    def similarity_only(cls, min_similarity: float) -> ScopeModel:
        """The uncalibrated default: out of scope when the best similarity is below `min_similarity`."""
        return cls(weights=[1.0] + [0.0] * (len(FEATURES) - 1), bias=0.0, threshold=min_similarity, calibration={"method": "default"})

    def score(self, features: ScopeFeatures) -> float:
        return float(np.asarray(self.weights) @ features.vector() + self.bias)

    def in_scope(self, features: ScopeFeatures) -> bool:
        return self.score(features) >= self.threshold


class ScopeVerdict(BaseModel):
    """What the retriever concluded about a question's scope, with the numbers behind it."""

    in_scope: bool
    score: float
    threshold: float
    calibrated: bool


class CalibrationError(ValueError):
    pass


def fit_scope(
    in_scope: Sequence[ScopeFeatures], out_of_scope: Sequence[ScopeFeatures], max_in_scope_abstained: float, regularisation: float
) -> ScopeModel:
    """Weights by logistic regression (classes balanced), and the threshold that abstains on at most
    `max_in_scope_abstained` of the in-scope questions given."""
    if not in_scope or not out_of_scope:
        raise CalibrationError("calibration needs both in-scope and out-of-scope questions")
    from sklearn.linear_model import LogisticRegression

    inside = np.stack([f.vector() for f in in_scope])
    outside = np.stack([f.vector() for f in out_of_scope])
    labels = np.r_[np.ones(len(inside)), np.zeros(len(outside))]
    fitted = LogisticRegression(C=regularisation, class_weight="balanced").fit(np.vstack([inside, outside]), labels)
    # Rounded as stored, then scored: the stored model abstains exactly as reported.
    weights = np.round(fitted.coef_[0], _DECIMALS)
    bias = round(float(fitted.intercept_[0]), _DECIMALS)
    inside_scores, outside_scores = inside @ weights + bias, outside @ weights + bias
    threshold = math.floor(_threshold(inside_scores, max_in_scope_abstained) * 10**_DECIMALS) / 10**_DECIMALS
    return ScopeModel(
        weights=[float(w) for w in weights],
        bias=bias,
        threshold=threshold,
        calibration={
            "method": "logistic",
            "in_scope": len(inside),
            "out_of_scope": len(outside),
            "target_in_scope_abstained": max_in_scope_abstained,
            "in_scope_abstained": round(float(np.mean(inside_scores < threshold)), 4),
            "out_of_scope_abstained": round(float(np.mean(outside_scores < threshold)), 4),
        },
    )


def _threshold(in_scope_scores: np.ndarray, max_abstained: float) -> float:
    """The largest threshold below which at most `max_abstained` of the scores fall."""
    ordered = np.sort(in_scope_scores)
    allowed = int(np.floor(max_abstained * len(ordered)))  # scores that may fall below
    return float(ordered[allowed]) if allowed < len(ordered) else float(ordered[-1])


# How answers say the sources don't answer: the configured sentence, and what LLMs write instead.
_NOT_COVERED = re.compile(
    r"\b(?:(?:does|do|did)\s*n[o']t|doesn't|don't)\s+(?:seem\s+to\s+|appear\s+to\s+)?"
    r"(?:cover|mention|contain|include|provide|answer|address|describe|discuss|say|specify)\b"
    r"|\bno\s+(?:information|mention|details?|documentation)\s+(?:about|on|of|regarding|for)\b"
    r"|\bnot\s+(?:covered|mentioned|described|documented|addressed|specified)\s+(?:in|by)\b"
    r"|\b(?:I|we)\s+(?:can(?:no|')t|(?:am|are)\s+unable\s+to|could\s*n[o']t)\s+(?:find|answer|determine|tell)\b"
    r"|\bI\s+don't\s+know\b",
    re.IGNORECASE,
)
# …said of the sources, not of the product ("Ray Serve doesn't include a web UI" is an answer).
_ABOUT_THE_SOURCES = re.compile(
    r"\b(?:sources?|context|documentation|docs|documents?|passages?|provided|given|excerpts?)\b|\b(?:I|we)\b|^there\s+is\s+no\b",
    re.IGNORECASE,
)
_FIRST_SENTENCE = re.compile(r"^(.+?[.!?])(?:\s|$)", re.DOTALL)


def says_not_covered(answer: str, phrase: str) -> bool:
    """Whether the answer opens by saying the documentation doesn't answer the question."""
    text = " ".join(answer.replace("’", "'").split())
    if not text:
        return True
    if _normalise(phrase) in _normalise(text):
        return True
    first = _FIRST_SENTENCE.match(text)
    sentence = first.group(1) if first else text
    return bool(_NOT_COVERED.search(sentence) and _ABOUT_THE_SOURCES.search(sentence))


def _normalise(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", "", text.lower().replace("’", "'")).split())
