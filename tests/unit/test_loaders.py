"""load_document: dispatch by suffix, the ways a file is unreadable, and fuzzing."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from docent.types import ParsedDocument, Section, UnreadableDocument
from ingest.loaders import SUPPORTED_SUFFIXES, load_document


def test_supported_suffixes():
    expected = {".html", ".htm", ".md", ".markdown", ".rst", ".ipynb", ".pdf", ".txt"}
    assert isinstance(SUPPORTED_SUFFIXES, frozenset) and expected == SUPPORTED_SUFFIXES


@pytest.mark.parametrize(
    ("relpath", "title"),
    [
        ("a/page.MD", "Heading"),
        ("a/page.markdown", "Heading"),
        ("a/page.RST", "Heading"),
        ("a/page.HTML", "Heading"),
    ],
)
def test_suffix_is_case_insensitive(relpath, title):
    data = b"<h1>Heading</h1><p>Body.</p>" if relpath.lower().endswith(".html") else b"Heading\n=======\n\nBody.\n"
    if relpath.lower().endswith((".md", ".markdown")):
        data = b"# Heading\n\nBody.\n"
    assert load_document(relpath, data).title == title


def test_plain_text_is_one_untitled_section():
    document = load_document("notes/notes.txt", b"Release notes\r\n\r\n\r\n\r\n2.7: faster spilling.   \n\tindented\n")
    assert document == ParsedDocument(
        title="notes", sections=[Section(title="notes", text="Release notes\n\n2.7: faster spilling.\n\tindented")]
    )


def test_a_utf8_bom_is_fine():
    assert load_document("bom.md", b"\xef\xbb\xbf# Title\n\nBody.\n").title == "Title"


@pytest.mark.parametrize(
    ("relpath", "data", "reason"),
    [
        ("image.png", b"\x89PNG", "unsupported file type '.png'"),
        ("Makefile", b"all:", "unsupported file type '(no suffix)'"),
        ("binary.md", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
        ("latin1.rst", "Caf\xe9\n====\n\nD\xe9j\xe0 vu.\n".encode("latin-1"), "not UTF-8"),
        ("empty.txt", b"   \n\n", "no text"),
        ("empty.html", b"<html><body><script>x()</script></body></html>", "no text"),
        ("only-headings.md", b"# Title\n\n## Sub\n", "no text"),
        ("toctree.rst", b"Index\n=====\n\n.. toctree::\n\n   a\n   b\n", "no text"),
    ],
)
def test_unreadable_documents_say_why(relpath, data, reason):
    with pytest.raises(UnreadableDocument, match=reason.replace("(", r"\(").replace(")", r"\)")):
        load_document(relpath, data)


def test_deep_nesting_is_unreadable_not_a_crash():
    rst = "".join(" " * depth + ".. note::\n\n" for depth in range(400)) + " " * 400 + "deep\n"
    with pytest.raises(UnreadableDocument, match="nested"):
        load_document("deep.rst", rst.encode())


MARKUP = [
    "#", "## ", "Title", "=====", "-----", "~~~", "\n", "\n\n", "    ", "\t", "text ", "::", ".. ",
    ".. _label:", ".. note::", ".. code-block:: python", ".. literalinclude:: x.py", ":start-after: a",
    ":lines: 2-x", ".. |s| replace:: y", ".. [1] f", "``", "`", "*", "**", "_", "|s|", ":ref:`a <b>`",
    "`t <u>`_", "(lbl)=", "```", "````{tab-set}", "```{note}", ":::{tip}", ":::", "---", "<!--", "-->",
    "[t](u)", "![i](s)", "{ref}`a <b>`", "<section id='a'>", "</section>", "<h2>", "</h2>", "<pre>",
    "</pre>", "<div class='section' id='d'>", "</div>", "<a name='n'>", "</a>", ">>> ", "| ", "+--+",
    "=== ===", "\r", "\u2028", "é", "\\",
]  # fmt: skip
markup_text = st.lists(st.sampled_from(MARKUP), max_size=60).map("".join)
TEXT_SUFFIXES = sorted(SUPPORTED_SUFFIXES - {".pdf"})


def assert_parsed_or_unreadable(relpath: str, data: bytes, read_include=None) -> None:
    try:
        document = load_document(relpath, data, read_include=read_include)
    except UnreadableDocument as exc:
        assert exc.reason
    else:
        assert document.title and document.sections
        assert all(section.text.strip() and section.title for section in document.sections)


@settings(max_examples=200, deadline=None)
@given(suffix=st.sampled_from(sorted(SUPPORTED_SUFFIXES | {".png", ""})), data=st.binary(max_size=512))
def test_random_bytes_never_raise_anything_but_unreadable(suffix, data):
    assert_parsed_or_unreadable(f"fuzz{suffix}", data)


@settings(max_examples=300, deadline=None)
@given(suffix=st.sampled_from(TEXT_SUFFIXES), text=markup_text, include=st.sampled_from([None, "a\nb\nc", ""]))
def test_random_markup_never_raises_anything_but_unreadable(suffix, text, include):
    assert_parsed_or_unreadable(f"fuzz{suffix}", text.encode(), read_include=lambda path: include)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=6,
)
cells = st.lists(
    st.dictionaries(st.sampled_from(["cell_type", "source", "metadata", "outputs"]), json_values)
    | st.fixed_dictionaries(
        {"cell_type": st.sampled_from(["markdown", "code", "raw"]), "source": markup_text | st.lists(markup_text)}
    ),
    max_size=5,
)


@settings(max_examples=100, deadline=None)
@given(nbformat=st.sampled_from([4, 3, "4", None]), cells=cells | json_values)
def test_odd_notebooks_never_raise_anything_but_unreadable(nbformat, cells):
    data = json.dumps({"nbformat": nbformat, "nbformat_minor": 5, "cells": cells}).encode()
    assert_parsed_or_unreadable("fuzz.ipynb", data)
