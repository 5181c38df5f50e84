from __future__ import annotations

from pathlib import Path

from docent.types import ParsedDocument
from ingest.loaders import load_document

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "docs"


def load(name: str) -> ParsedDocument:
    return load_document(name, (FIXTURES / name).read_bytes())


def test_sphinx_sections_and_their_ids():
    document = load("sphinx_page.html")
    assert document.title == "Transforming Data"
    assert [(s.title, s.anchor) for s in document.sections] == [
        ("Transforming Data", "transforming-data"),
        ("Configuring batch format", "configuring-batch-format"),
        ("Defaults", "id1"),
    ]  # "Empty section" has only its heading


def test_section_text_is_its_own_and_keeps_code_layout():
    sections = load("sphinx_page.html").sections
    assert sections[0].text == "Transformations let you process and modify your dataset. You can compose them."
    assert sections[1].text == (
        "Specify batch_format in map_batches().\n\n"
        "import ray\n\ndef f(batch):\n    return batch\n\n"
        "numpy\n\npandas\n\n"
        "Text after a nested section still belongs to its parent."
    )
    assert sections[2].text == "NumPy is the default."


def test_theme_chrome_and_headerlinks_are_left_out():
    text = "\n".join(s.text + s.title for s in load("sphinx_page.html").sections)
    chrome = ("script text", "color: red", "Header text", "Sidebar", "Breadcrumbs", "Previous page", "Copyright")
    for left_out in (*chrome, "#", "¶"):
        assert left_out not in text


def test_classic_theme_div_sections():
    document = load("classic_page.html")
    assert [(s.title, s.anchor, s.text) for s in document.sections] == [
        ("Installing", "installing", "Use pip."),
        ("From source", "from-source", "Clone the repository."),
    ]


def test_pages_without_sections_split_at_headings():
    document = load("plain_page.html")
    assert document.title == "Plain Page"
    assert [(s.title, s.anchor, s.text) for s in document.sections] == [
        ("Plain Page", None, "Intro before any heading."),
        ("Plain Page", None, "First paragraph.\nSecond line."),
        ("Wrapped heading", "wrapped", "Text under a heading whose parent has the id."),
        ("Anchor inside", "old-anchor", "Text under an old-style anchor."),
        ("Anchor before", "before", "cell one cell two"),
        ("No anchor", None, "Text under a heading without any id."),
    ]


def test_heading_ids_are_anchors_and_fragments_work():
    document = load_document("x.htm", b"<h2 id='usage'>Usage</h2><p>Call it.</p>")
    assert [(s.title, s.anchor, s.text) for s in document.sections] == [("Usage", "usage", "Call it.")]
    assert document.title == "x"  # no h1
