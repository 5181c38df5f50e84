"""Types shared by the ingest job and the services.

Plain dataclasses travel through Ray Data and between processes; pydantic models are
the ones that cross an API or are stored as JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class UnreadableDocument(Exception):
    """A file that cannot be turned into text; `reason` is shown to the operator."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Section:
    """A titled piece of a document; `anchor` is the fragment that links to it."""

    title: str
    text: str
    anchor: str | None = None


@dataclass
class ParsedDocument:
    title: str
    sections: list[Section] = field(default_factory=list)


@dataclass
class Chunk:
    """A piece of a section, as stored in an index."""

    document_uri: str
    ordinal: int
    text: str
    source: str
    section_title: str
    page_title: str
    token_count: int = 0
    section_offset: int | None = None  # where the chunk starts in its section's text
    embedding: list[float] | None = None

    @property
    def embedding_text(self) -> str:
        return embedding_text(self.page_title, self.section_title, self.text)


def embedding_text(page_title: str, section_title: str, text: str) -> str:
    """The text a chunk is embedded and lexically indexed as: its titles, then its body.

    Titles name what a chunk is about even when its body never says so (a code sample
    under "Configuring batch format"), which is most of what a question matches on.
    """
    titles = [t for t in (page_title, section_title) if t]
    if len(titles) == 2 and titles[0] == titles[1]:
        titles = titles[:1]
    heading = " > ".join(titles)
    return f"{heading}\n{text}" if heading else text


def page_of(source: str) -> str:
    """The page a source URL points into: everything before `#`."""
    return source.split("#", 1)[0]


class IndexConfig(BaseModel):
    """What defines an index: the same config always yields the same chunks and vectors."""

    name: str
    embedding_model: str
    embedding_dim: int
    chunk_size: int
    chunk_overlap: int
    chunk_unit: str = "chars"
    include_titles: bool = True


class IndexInfo(IndexConfig):
    id: int
    documents: int = 0
    chunks: int = 0
    size_bytes: int = 0
    revision: int = 0
    updated_at: str | None = None


class SearchHit(BaseModel):
    rank: int
    score: float
    similarity: float | None = None  # the query's cosine similarity to the chunk, when semantic search found it
    source: str
    text: str
    chunk_id: int
    section_title: str = ""
    page_title: str = ""


# --- The query API -------------------------------------------------------------------

EXTRACTIVE_LLM = "extractive"  # the offline answer: sentences of the sources, no LLM


class UnknownLLM(ValueError):
    def __init__(self, name: str, known: list[str]):
        super().__init__(f"unknown LLM {name!r}; known: {', '.join(known) or 'none'}")
        self.name, self.known = name, list(known)

    def __reduce__(self):  # crosses Serve's process boundary with its fields
        return type(self), (self.name, self.known)



class QueryOptions(BaseModel):
    """Per-request overrides of the retrieval and generation settings."""

    model_config = ConfigDict(extra="forbid", strict=True)

    mode: Literal["semantic", "lexical", "hybrid"] | None = None
    num_chunks: int | None = Field(None, ge=1, description="chunks retrieved (before reranking)")
    lexical_k: int | None = Field(None, ge=0, description="BM25 hits joined to the semantic ones")
    fusion: Literal["reference", "rrf"] | None = None
    strategy: Literal["chunks", "sentence-window", "parent-section"] | None = None
    rerank: bool | None = Field(None, description="apply the tag reranker (default: when one is trained)")
    llm: str | None = Field(None, description="answer with this LLM (or `extractive`) instead of the router's choice")


class QueryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    query: str = Field(description="the question")
    index: str | None = Field(None, description="index to answer from (default: the configured one)")
    options: QueryOptions = Field(default_factory=QueryOptions)

    @field_validator("query")
    @classmethod
    def _not_blank(cls, query: str) -> str:
        if not query.strip():
            raise ValueError("the query is empty")
        return query.strip()


class Source(BaseModel):
    number: int = Field(description="what the answer cites as [number]")
    source: str = Field(description="URL of the section, with its anchor")
    title: str
    text: str
    score: float = Field(description="the retriever's ranking score (a fused rank score in hybrid mode)")
    similarity: float | None = Field(None, description="cosine similarity of question and chunk (null: found by BM25 only)")


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Route(BaseModel):
    llm: str = Field(description="the LLM chosen before any fallback")
    probability_oss: float | None = Field(None, description="the router's p(open-source LLM answers well)")
    reason: str


class Fallback(BaseModel):
    llm: str = Field(description="an LLM that failed")
    reason: str


Stage = Literal["embed", "retrieve", "rerank", "route", "generate", "total"]


class Answer(BaseModel):
    answer_id: str = Field(description="names this answer: send it with feedback (POST /feedback)")
    question: str
    index: str
    answer: str
    sources: list[Source]
    llm: str = Field(description="the LLM that actually answered (`extractive`: no LLM, sentences of the sources)")
    route: Route
    usage: Usage
    cost: float = Field(description="estimated $ from the LLM's prices")
    fallbacks: list[Fallback] = Field(default_factory=list)
    timings_ms: dict[Stage, float]
    cached: bool = Field(False, description="served from the response cache: an earlier identical question's answer")


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    answer_id: str = Field(min_length=1, description="the answer's `answer_id` (from /query or /stream's done event)")
    rating: Literal["up", "down"]
    comment: str | None = Field(None, description="what was wrong or right, in the user's words")


class FeedbackReceipt(BaseModel):
    feedback_id: int
    answer_id: str
