"""Types shared by the ingest job and the services.

Plain dataclasses travel through Ray Data and between processes; pydantic models are
the ones that cross an API or are stored as JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel


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
    source: str
    text: str
    chunk_id: int
    section_title: str = ""
    page_title: str = ""
