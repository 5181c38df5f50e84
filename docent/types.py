"""Types shared by the ingest job and the services.

Plain dataclasses travel through Ray Data and between processes; pydantic models are
the ones that cross an API or are stored as JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from docent.errors import DocentError, UsageError
from docent.text import page_section_title


class UnreadableDocument(DocentError):
    """A file that cannot be turned into text; `reason` is shown to the operator."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# --- Closed sets of choices: declared once, used by the settings, the API and the CLI ---


class RetrievalMode(StrEnum):
    SEMANTIC = "semantic"
    LEXICAL = "lexical"
    HYBRID = "hybrid"


class Fusion(StrEnum):
    """reference: lexical hits inserted after the first lexical_k semantic ones; rrf: reciprocal-rank fusion."""

    REFERENCE = "reference"
    RRF = "rrf"


class Strategy(StrEnum):
    """What a hit returns: its chunk, the chunk with its neighbours, or its whole section."""

    CHUNKS = "chunks"
    SENTENCE_WINDOW = "sentence-window"
    PARENT_SECTION = "parent-section"


class ChunkUnit(StrEnum):
    CHARS = "chars"
    TOKENS = "tokens"


class EmbeddingProvider(StrEnum):
    SENTENCE_TRANSFORMERS = "sentence-transformers"
    OPENAI = "openai"


class EmbeddingBackend(StrEnum):
    TORCH = "torch"
    ONNX = "onnx"
    ONNX_INT8 = "onnx-int8"


class AnchorStyle(StrEnum):
    SPHINX = "sphinx"
    GITHUB = "github"


class UrlStyle(StrEnum):
    """How a docs site publishes a source file's page (`guide/setup.md` under the base URL)."""

    HTML = "html"  # Sphinx and most generators: guide/setup.html
    DIRECTORY = "directory"  # MkDocs, Docusaurus, Hugo: guide/setup/ (index.md → its folder)
    NONE = "none"  # extension dropped: guide/setup


class LexicalBackend(StrEnum):
    BM25S = "bm25s"
    RANK_BM25 = "rank-bm25"


class ExtractiveEmbedding(StrEnum):
    STATIC = "static"
    MODEL = "model"


class RedisFailure(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class SlackMode(StrEnum):
    SOCKET = "socket"
    HTTP = "http"


class Rating(StrEnum):
    UP = "up"
    DOWN = "down"


class FinetuneMode(StrEnum):
    """What fine-tuning trains: every weight, or the word embeddings only."""

    FULL = "full"
    EMBEDDING_LAYER = "embedding-layer"


class CondenserKind(StrEnum):
    """How a follow-up question is made to stand alone: by an LLM when one is configured, else offline."""

    AUTO = "auto"
    LLM = "llm"
    OFFLINE = "offline"


class ModelKind(StrEnum):
    """The trained classifiers docent keeps as artifacts."""

    RERANKER = "reranker"
    ROUTER = "router"


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
    heading = page_section_title(page_title, section_title)
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
    chunk_unit: ChunkUnit = ChunkUnit.CHARS
    include_titles: bool = True
    url_style: UrlStyle = UrlStyle.HTML  # how its sources' pages are published under the base URL


class IndexInfo(IndexConfig):
    id: int
    documents: int = 0
    chunks: int = 0
    size_bytes: int = 0
    revision: int = 0
    updated_at: str | None = None
    incomplete: str | None = None  # why the index is not ready to search (an interrupted ingest); None when it is


class SearchHit(BaseModel):
    rank: int
    score: float
    similarity: float | None = None  # the query's cosine similarity to the chunk, when semantic search found it
    source: str
    text: str
    chunk_id: int
    section_title: str = ""
    page_title: str = ""
    # The section's text right after this chunk (the next chunk, overlap removed), for the top
    # hits only: where a sentence's "as follows:" continues.
    continuation: str = ""


# --- The query API -------------------------------------------------------------------

EXTRACTIVE_LLM = "extractive"  # the offline answer: a passage of the sources, no LLM
NO_LLM = "none"  # an abstained answer: the question is outside the docs, no LLM was asked


class UnknownLLM(UsageError, ValueError):
    """An LLM name that is not configured; `role` says what it was asked for as (an LLM, a judge)."""

    field = "options.llm"

    def __init__(self, name: str, known: list[str], role: str = "LLM"):
        super().__init__(f"unknown {role} {name!r}; known: {', '.join(known) or 'none'}")
        self.name, self.known, self.role = name, list(known), role

    def __reduce__(self):  # crosses Serve's process boundary with its fields
        return type(self), (self.name, self.known, self.role)



def storable_text(text: str) -> str:
    """Text PostgreSQL can store and UTF-8 can encode: no NUL character, no unpaired surrogate."""
    if "\x00" in text:
        raise ValueError("contains a NUL character (\\u0000)")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("is not valid Unicode (an unpaired surrogate such as \\ud800)") from None
    return text


# Every string a request carries: it may be logged, stored and rated, so it must be storable.
Text = Annotated[str, AfterValidator(storable_text)]


class QueryOptions(BaseModel):
    """Per-request overrides of the retrieval and generation settings."""

    model_config = ConfigDict(extra="forbid", strict=True)

    mode: RetrievalMode | None = Field(None, strict=False)
    num_chunks: int | None = Field(None, ge=1, description="chunks retrieved (before reranking)")
    lexical_k: int | None = Field(None, ge=0, description="BM25 hits joined to the semantic ones")
    fusion: Fusion | None = Field(None, strict=False)
    strategy: Strategy | None = Field(None, strict=False)
    rerank: bool | None = Field(None, description="apply the tag reranker (default: when one is trained)")
    llm: Text | None = Field(None, description="answer with this LLM (or `extractive`) instead of the router's choice")
    abstain: bool | None = Field(
        None, description="say so when the question is outside what the docs cover, without answering (default: abstention.enabled)"
    )


class Role(StrEnum):
    USER = "user"
    ASSISTANT = "assistant"


class Turn(BaseModel):
    """One message of a conversation: the user's question or docent's answer."""

    model_config = ConfigDict(extra="forbid", strict=True)

    role: Role = Field(strict=False)
    content: Text


class QueryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    query: Text = Field(description="the question")
    index: Text | None = Field(None, description="index to answer from (default: the configured one)")
    options: QueryOptions = Field(default_factory=QueryOptions)
    conversation_id: Text | None = Field(
        None, min_length=1,
        description="continue this conversation (an earlier answer's `conversation_id`): the gateway keeps its turns",
    )
    history: list[Turn] = Field(
        default_factory=list,
        description="the conversation so far, oldest first, when the client keeps it (instead of `conversation_id`)",
    )

    @field_validator("query")
    @classmethod
    def _not_blank(cls, query: str) -> str:
        if not query.strip():
            raise ValueError("the query is empty")
        return query.strip()

    @model_validator(mode="after")
    def _one_history(self) -> QueryRequest:
        if self.conversation_id is not None and self.history:
            raise ValueError("send either conversation_id or history, not both")
        return self


class Source(BaseModel):
    number: int = Field(description="what the answer cites as [number]")
    source: str = Field(description="URL of the section, with its anchor")
    title: str
    text: str
    score: float = Field(description="the retriever's ranking score (a fused rank score in hybrid mode)")
    similarity: float | None = Field(None, description="cosine similarity of question and chunk (null: found by BM25 only)")
    cited: bool = Field(False, description="the answer cites this source")
    snippet: str = Field("", description="the part of the source the answer used (empty when not cited)")


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


Stage = Literal["condense", "embed", "retrieve", "rerank", "route", "generate", "total"]


class Citation(BaseModel):
    sentence: str = Field(description="the claim, as the answer words it, without its citation marks")
    sources: list[int] = Field(description="the source numbers it cites")
    supported: bool = Field(description="every cited source says it (score ≥ the threshold)")
    score: float = Field(description="support by the least supportive cited source, 0–1")


class Answer(BaseModel):
    answer_id: str = Field(description="names this answer: send it with feedback (POST /feedback)")
    question: str
    index: str
    answer: str
    sources: list[Source]
    llm: str = Field(description="the LLM that actually answered (`extractive`: no LLM, sentences of the sources)")
    route: Route
    usage: Usage = Field(description="tokens of the answering LLM and, for a follow-up, of the LLM that condensed it")
    cost: float = Field(description="estimated $ from the LLMs' prices: the answer's and, for a follow-up, condensing it")
    fallbacks: list[Fallback] = Field(default_factory=list)
    timings_ms: dict[Stage, float]
    cached: bool = Field(False, description="served from the response cache: an earlier identical question's answer")
    abstained: bool = Field(
        False, description="the answer says the documentation doesn't cover the question (before any LLM, or the LLM said so)"
    )
    citations: list[Citation] = Field(
        default_factory=list, description="each cited claim of the answer, checked against the sources it cites"
    )
    conversation_id: str = Field(
        "", description="the conversation this answer belongs to: send it with a follow-up question"
    )
    standalone_question: str = Field(
        "", description="what was searched for: the question rewritten to stand on its own when it depended on "
        "the conversation, else the question itself"
    )


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    answer_id: Text = Field(min_length=1, description="the answer's `answer_id` (from /query or /stream's done event)")
    rating: Rating = Field(strict=False)
    comment: Text | None = Field(None, description="what was wrong or right, in the user's words")


class FeedbackReceipt(BaseModel):
    feedback_id: int
    answer_id: str
