"""An experiment's search space: a YAML file naming the corpus, the eval set and the configurations to try.

```yaml
name: chunk-size                          # MLflow experiment; re-running it reuses finished trials
corpus: ../shared/corpora/ray-docs-2.7    # docs folder indexed by the ingest job (one index per chunking+embedding)
base_url: https://docs.ray.io/en/master/  # public URL of the corpus
eval: ../shared/datasets/eval-dataset-v1.jsonl          # or s3://bucket/key
references: ../shared/datasets/references-gpt-4-turbo.json   # optional: answer metrics; or s3://bucket/key
config: ../config/ray-docs.yaml           # optional settings file every trial starts from
fixed: {llm: extractive}                  # parameters every trial shares
grid: {chunk_size: [300, 700], num_chunks: [5, 13]}            # every combination, or
random: {chunk_size: [100, 300, 500], num_chunks: [1, 15]}     # `samples` draws (seeded), or
sweeps: {chunk_size: [100, 300], num_chunks: [1, 5, 9]}        # one parameter at a time, the rest `fixed`
```

Paths are relative to the space file. `corpus`, `eval` and `references` may be s3:// URIs (read
with the settings' S3 endpoint and keys, see ingest/remote.py); `config` is a local file, since
it holds those settings. Parameters are the names in `PARAMETERS`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from docent.errors import UsageError
from docent.llm import require_llm
from docent.settings import ChunkingSettings, Settings, default_index_name
from docent.types import EXTRACTIVE_LLM, UnknownLLM
from docent.uris import is_remote


class SpaceError(UsageError, ValueError):
    """A search space that cannot be run; the message names the problem."""


@dataclass(frozen=True)
class Parameter:
    """Where a parameter goes: a settings path, and whether changing it needs another index."""

    setting: tuple[str, ...]
    builds_index: bool = False
    description: str = ""


PARAMETERS: dict[str, Parameter] = {
    "chunk_size": Parameter(("chunking", "chunk_size"), True, "maximum chunk length"),
    "chunk_overlap": Parameter(("chunking", "chunk_overlap"), True, "overlap between neighbouring chunks"),
    "chunk_unit": Parameter(("chunking", "unit"), True, "chars or tokens"),
    "embedding_model": Parameter(("embedding", "model"), True, "sentence-transformers name or path"),
    "num_chunks": Parameter(("retrieval", "num_chunks"), description="chunks retrieved (0: no context)"),
    "lexical_k": Parameter(("retrieval", "lexical_k"), description="BM25 hits joined to the semantic ones"),
    "retrieval_mode": Parameter(("retrieval", "mode"), description="semantic, lexical or hybrid"),
    "fusion": Parameter(("retrieval", "fusion"), description="reference or rrf"),
    "strategy": Parameter(("retrieval", "strategy"), description="chunks, sentence-window or parent-section"),
    "max_chunks_per_page": Parameter(("retrieval", "max_chunks_per_page"), description="0: no limit"),
    "rerank": Parameter(("rerank", "enabled"), description="rerank with the tag classifier (when trained)"),
    "rerank_threshold": Parameter(("rerank", "threshold"), description="tag probability moving a docs area first"),
    "rerank_k": Parameter(("rerank", "k"), description="chunks kept after reranking"),
    "llm": Parameter(("generation", "llm"), description="a configured LLM, or extractive"),
    "system_prompt": Parameter(("generation", "system_prompt"), description="the generator's system prompt"),
    "temperature": Parameter(("generation", "temperature")),
}

Configuration = dict[str, Any]  # parameter name → value


def _path_or_uri(value: Any) -> Any:
    """An s3:// URI stays text (as a Path its `//` would fold); other text is a path."""
    if isinstance(value, Path) or value is None:
        return value
    if not isinstance(value, str):
        raise ValueError("give a file path or an s3:// URI")  # noqa: TRY004 - pydantic reports ValueErrors as validation errors
    return value if is_remote(value) else Path(value)


PathOrUri = Annotated[Path | str, BeforeValidator(_path_or_uri)]


class ExperimentSpace(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    corpus: str = Field(description="docs folder (or s3:// URI) the indexes are built from")
    base_url: str
    eval: PathOrUri
    references: PathOrUri | None = None
    config: Path | None = Field(None, description="settings file every trial starts from")
    settings: dict[str, Any] = Field(default_factory=dict, description="settings overrides every trial shares")
    index_prefix: str | None = Field(None, description="indexes are named <prefix>-<model>-<size>-<overlap>")
    fixed: Configuration = Field(default_factory=dict)
    grid: dict[str, list[Any]] | None = None
    random: dict[str, list[Any]] | None = None
    samples: int | None = Field(None, ge=1)
    seed: int = 0
    sweeps: dict[str, list[Any]] | None = None
    judge: str | None = Field(None, description="configured LLM judging answers (quality_score)")
    limit: int | None = Field(None, ge=1, description="only the eval set's first N questions")

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
            raise ValueError("use letters, digits, '.', '_' and '-' (it names folders and the MLflow experiment)")
        return name

    @model_validator(mode="after")
    def _one_search(self) -> ExperimentSpace:
        given = [kind for kind in ("grid", "random", "sweeps") if getattr(self, kind)]
        if len(given) != 1:
            raise ValueError(f"give exactly one of grid, random or sweeps (got {', '.join(given) or 'none'})")
        if self.random and not self.samples:
            raise ValueError("random needs samples: how many configurations to draw")
        varied = self.grid or self.random or self.sweeps or {}
        for name, values in {**varied, **{k: [v] for k, v in self.fixed.items()}}.items():
            if name not in PARAMETERS:
                raise ValueError(f"unknown parameter {name!r}; known: {', '.join(PARAMETERS)}")
            if not isinstance(values, list) or not values:
                raise ValueError(f"{name}: give a non-empty list of values")
        return self

    @property
    def varied(self) -> dict[str, list[Any]]:
        return self.grid or self.random or self.sweeps or {}

    def configurations(self) -> list[Configuration]:
        """Every configuration to run, in a stable order, each with the fixed parameters."""
        if self.grid:
            names = list(self.grid)
            chosen = [dict(zip(names, values)) for values in itertools.product(*self.grid.values())]
        elif self.random:
            draw = random.Random(self.seed)
            chosen = [{name: draw.choice(values) for name, values in self.random.items()} for _ in range(self.samples)]
        else:
            chosen = [{name: value} for name, values in self.sweeps.items() for value in values]
        unique = {canonical(self.fixed | c): self.fixed | c for c in chosen}  # a sweep's values may repeat `fixed`
        return list(unique.values())

    def index_name(self, settings: Settings) -> str:
        prefix = self.index_prefix or slug(Path(self.corpus.rstrip("/")).name)
        return f"{prefix}-{default_index_name(settings.embedding.model, settings.chunking)}"


def load_space(path: Path) -> ExperimentSpace:
    """The space in a YAML file, with its paths made relative to the file; `SpaceError` when unusable."""
    if not path.is_file():
        raise SpaceError(f"space file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SpaceError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise SpaceError(f"{path}: expected a mapping with name, corpus, base_url, eval and grid/random/sweeps")
    try:
        space = ExperimentSpace(**raw)
    except ValidationError as exc:
        problems = "; ".join(_problem(e) for e in exc.errors())
        raise SpaceError(f"{path}: {problems}") from None
    here = path.resolve().parent
    located = {
        "eval": _located(here, space.eval),
        "references": _located(here, space.references),
        "config": _located(here, space.config),
        "corpus": space.corpus if "://" in space.corpus else str(here / space.corpus),
    }
    for field in ("eval", "references", "config"):  # objects in a bucket are read (and checked) when the plan is made
        if isinstance(located[field], Path) and not located[field].is_file():
            raise SpaceError(f"{path}: {field} file not found: {located[field]}")
    if "://" not in located["corpus"] and not Path(located["corpus"]).exists():
        raise SpaceError(f"{path}: corpus not found: {located['corpus']}")
    return space.model_copy(update=located)


def _located(here: Path, value: Path | str | None) -> Path | str | None:
    """A path relative to the space file's folder; a URI (or nothing) as it is."""
    return here / value if isinstance(value, Path) else value


def _problem(error: dict[str, Any]) -> str:
    message = error["msg"].removeprefix("Value error, ")
    where = ".".join(map(str, error["loc"]))
    return f"{where}: {message}" if where else message


def trial_settings(base: Settings, configuration: Configuration) -> Settings:
    """The base settings with the configuration's parameters applied, validated."""
    values = base.model_dump()
    for name, value in configuration.items():
        *sections, key = PARAMETERS[name].setting
        if sections == ["generation"] and key == "llm":
            continue  # chosen per question through the query options, not a setting
        target = values
        for section in sections:
            target = target[section]
        target[key] = value
    return Settings.model_validate(values)


def index_key(settings: Settings) -> tuple[str, ChunkingSettings]:
    """What makes two trials need different indexes."""
    return settings.embedding.model, settings.chunking


def check_llms(configurations: list[Configuration], settings: Settings, judge: str | None) -> None:
    known = [m.name for m in settings.generation.llms]
    for role, name, choices in [
        *(("llm", c["llm"], [*known, EXTRACTIVE_LLM]) for c in configurations if c.get("llm") is not None),
        *([("judge", judge, known)] if judge is not None else []),
    ]:
        try:
            require_llm(name, choices, role)
        except UnknownLLM as exc:
            raise SpaceError(f"{role} {name!r} is not configured; configured: {', '.join(exc.known) or 'none'}") from None


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def digest(value: Any) -> str:
    return hashlib.sha256(canonical(value).encode()).hexdigest()


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def trial_label(configuration: Configuration, varied: list[str]) -> str:
    """`chunk_size=300,num_chunks=5`: the varied parameters, or all of them when none vary."""
    shown = [n for n in varied if n in configuration] or sorted(configuration)
    return ",".join(f"{n}={_short(configuration[n])}" for n in shown)


_LABEL_VALUE_CHARS = 24  # a system prompt would otherwise swamp the label


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= _LABEL_VALUE_CHARS else text[: _LABEL_VALUE_CHARS - 1] + "…"
