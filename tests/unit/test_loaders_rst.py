from __future__ import annotations

from pathlib import Path

import pytest

from docent.types import ParsedDocument
from ingest.loaders import load_document

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "docs"


def parse(text: str, **options) -> ParsedDocument:
    return load_document("page.rst", text.encode(), **options)


def read_fixture_include(path: str) -> str | None:
    target = FIXTURES / path
    return target.read_text() if target.is_file() else None


@pytest.fixture(scope="module")
def guide() -> ParsedDocument:
    return load_document("guide.rst", (FIXTURES / "guide.rst").read_bytes(), read_include=read_fixture_include)


def section(document: ParsedDocument, anchor: str):
    return next(s for s in document.sections if s.anchor == anchor)


def test_sections_titles_and_anchors(guide):
    assert guide.title == "Guide to Tasks"
    assert [(s.title, s.anchor) for s in guide.sections] == [
        ("Guide to Tasks", "guide-to-tasks"),
        ("Setting up", "setting-up"),  # labels above it are extra ids; Sphinx's <section id> is this
        ("Running a task", "running-a-task"),
        ("Setting up", "id1"),  # a repeated title: docutils numbers it
    ]  # "Empty section" has no body and is dropped


def test_inline_markup_reads_as_plain_text(guide):
    assert section(guide, "guide-to-tasks").text == (
        "Tasks run functions remotely. See the actors page and\n"
        "ray.actor.ActorHandle for the other half; bold, emphasis and\n"
        "inline code read as plain words, and so does release."
    )


def test_literal_blocks_and_literalinclude(guide):
    assert section(guide, "setting-up").text == 'Start Ray first:\n\nray.init()\nprint("ready")\n\nray.init()'


def test_directive_bodies_are_kept_and_markup_dropped(guide):
    text = section(guide, "running-a-task").text
    assert text == (
        "Tasks are scheduled on any node with free resources.\n\n"
        "Calling a task\n\n"
        "@ray.remote\ndef f():\n    return 1\n\n"
        "Python\n\nUse f.remote() to call it.\n\n"
        "Java\n\nUse Ray.task(...).\n\n"
        "How tasks are placed on nodes.\n\n"
        "Read the Ray paper for the design."
    )
    everything = "\n".join(s.text for s in guide.sections)
    for hidden in ("toctree", "tasks/nested", "comment", "raw html", "hidden output", "diagram.png", ":width:"):
        assert hidden not in everything


def test_adornment_styles_set_levels_in_order_of_appearance():
    document = parse("Top\n###\n\nA\n\nSub\n***\n\nB\n\nOther top\n#########\n\nC\n")
    assert [(s.title, s.text) for s in document.sections] == [("Top", "A"), ("Sub", "B"), ("Other top", "C")]


def test_what_docutils_does_not_read_as_a_title():
    text = (
        "Title\n=====\n\n"
        "A paragraph line\n"
        "followed by an underline\n"
        "------------------------\n\n"
        "Too short\n--\n\n"
        "- a bullet\n----------\n\n"
        "----\n\n"
        "A transition above is no title either.\n"
    )
    document = parse(text)
    assert [s.title for s in document.sections] == ["Title"]


def test_a_short_underline_of_four_or_more_still_makes_a_title():
    assert [s.title for s in parse("A long title\n----\n\nBody.\n").sections] == ["A long title"]


def test_label_matching_the_title_slug_is_the_anchor():
    document = parse(".. _install:\n\nInstall\n=======\n\nBody.\n")
    assert document.sections[0].anchor == "install"


def test_named_hyperlinks_take_ids_like_docutils():
    # `Ray Client <url>`_ defines a target "ray client"; a later "Ray Client" section is id1.
    document = parse("Top\n===\n\nSee `Ray Client <https://x.io>`_.\n\nRay Client\n----------\n\nBody.\n")
    assert [s.anchor for s in document.sections] == ["top", "id1"]


def test_anchor_style_github():
    document = parse("Using Ray's logger\n==================\n\nBody.\n", anchor_style="github")
    assert document.sections[0].anchor == "using-rays-logger"


def test_text_before_the_first_title_gets_the_page_title():
    document = parse("Preamble text.\n\nThe Title\n=========\n\nBody.\n")
    assert [(s.title, s.anchor, s.text) for s in document.sections] == [
        ("The Title", None, "Preamble text."),
        ("The Title", "the-title", "Body."),
    ]


def test_without_titles_the_file_stem_is_the_title():
    document = load_document("docs/notes.rst", b"Just a paragraph.\n")
    assert document.title == "notes"
    assert document.sections[0].title == "notes"


def test_literalinclude_options():
    code = "line 1\n# start\nline 3\nline 4\n# end\nline 6"
    include = {"x.py": code}.get
    rst = (
        "T\n=\n\n"
        ".. literalinclude:: x.py\n   :start-after: # start\n   :end-before: # end\n\n"
        ".. literalinclude:: x.py\n   :lines: 1,5-\n\n"
        ".. literalinclude:: x.py\n   :start-after: not there\n"
    )
    assert parse(rst, read_include=include).sections[0].text == "line 3\nline 4\n\nline 1\n# end\nline 6"


def test_literalinclude_without_a_reader_is_dropped():
    document = parse("T\n=\n\nText.\n\n.. literalinclude:: x.py\n")
    assert document.sections[0].text == "Text."


def test_multiline_roles_and_escapes():
    document = parse("T\n=\n\nSee :ref:`the long\ntitle <target>` and \\*not emphasis\\*.\n")
    assert document.sections[0].text == "See the long\ntitle and *not emphasis*."


def test_admonition_titles_and_dropdowns_are_kept():
    rst = "T\n=\n\n.. admonition:: Why actors?\n\n   Because state.\n\n.. dropdown:: Details\n\n   More.\n"
    assert parse(rst).sections[0].text == "Why actors?\n\nBecause state.\n\nDetails\n\nMore."


def test_grid_and_button_arguments_are_layout_not_text():
    rst = "T\n=\n\n.. grid:: 1 2 2 3\n\n    .. grid-item-card:: Ray Data\n        :link: data\n\n        Scale data.\n"
    assert parse(rst).sections[0].text == "Ray Data\n\nScale data."


def test_tables_lose_their_borders():
    rst = "T\n=\n\n=====  =====\nName   Value\n=====  =====\nx      1\n=====  =====\n"
    assert parse(rst).sections[0].text == "Name   Value\nx      1"
