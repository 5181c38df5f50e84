"""Counting and cutting text in an LLM's tokens, with a local Hugging Face tokenizer.

The prompt is trimmed to a token budget and usage is counted when an endpoint does not
report it. No model hub is reachable, so a tokenizer is either a local directory, a name
already in the Hugging Face cache, or (by default) the packaged all-MiniLM-L6-v2 one,
which counts a little high for the BPE tokenizers of most LLMs: a safe error.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Protocol

from docent.embedding.model import resolve_model_path
from docent.errors import DocentError, ExitCode
from docent.settings import DEFAULT_EMBEDDING_MODEL


class TokenizerError(DocentError, RuntimeError):
    """A configured tokenizer that cannot be loaded: the operator's settings name it (exit 2)."""

    exit_code = ExitCode.USAGE


class Tokenizer(Protocol):
    def count(self, text: str) -> int: ...

    def truncate(self, text: str, max_tokens: int) -> str: ...


class HuggingFaceTokenizer:
    """A transformers tokenizer, counted without special tokens, never warning about length."""

    def __init__(self, name: str, tokenizer: Any):
        self.name = name
        self._tokenizer = tokenizer

    def count(self, text: str) -> int:
        return len(self._encode(text, offsets=False)["input_ids"])

    def truncate(self, text: str, max_tokens: int) -> str:
        """The longest start of `text` that is at most `max_tokens` tokens, cut in the original text."""
        if max_tokens <= 0:
            return ""
        if not self._tokenizer.is_fast:
            # Slow tokenizers have no offsets; decoding may normalise the text (case, accents).
            ids = self._encode(text, offsets=False)["input_ids"]
            return text if len(ids) <= max_tokens else self._tokenizer.decode(ids[:max_tokens])
        offsets = self._encode(text, offsets=True)["offset_mapping"]
        if len(offsets) <= max_tokens:
            return text
        return text[: offsets[max_tokens - 1][1]]

    def _encode(self, text: str, offsets: bool) -> Any:
        # verbose=False: texts longer than the model's own limit are expected here, so the
        # "Token indices sequence length is longer than …" warning would only be noise.
        return self._tokenizer(
            text, add_special_tokens=False, truncation=False, return_offsets_mapping=offsets, verbose=False
        )


@cache
def load_tokenizer(name_or_path: str | None = None) -> HuggingFaceTokenizer:
    """The tokenizer of a local directory or cached name; None: the packaged embedding model's."""
    from transformers import AutoTokenizer

    name = name_or_path or DEFAULT_EMBEDDING_MODEL
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(name), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise TokenizerError(
            f"cannot load tokenizer {name!r}: it is neither a local directory nor in the Hugging Face cache, "
            "and no model hub is reachable here; give a local tokenizer directory, or leave `tokenizer` unset "
            "to count with the embedding model's"
        ) from exc
    return HuggingFaceTokenizer(name, tokenizer)
