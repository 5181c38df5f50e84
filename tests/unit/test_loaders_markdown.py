from __future__ import annotations

from pathlib import Path

import pytest

from docent.types import ParsedDocument
from ingest.loaders import load_document
from ingest.loaders.markdown import inline_text

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "docs"


def parse(text: str, **options) -> ParsedDocument:
    return load_document("page.md", text.encode(), **options)


def read_fixture_include(path: str) -> str | None:
    target = FIXTURES / path
    return target.read_text() if target.is_file() else None


@pytest.fixture(scope="module")
def guide() -> ParsedDocument:
    return load_document("guide.md", (FIXTURES / "guide.md").read_bytes(), read_include=read_fixture_include)


def test_sections_titles_and_anchors(guide):
    assert guide.title == "Guide in MyST"
    assert [(s.title, s.anchor) for s in guide.sections] == [
        ("Guide in MyST", None),  # text before the first heading
        ("Guide in MyST", "guide-in-myst"),
        ("Targets above headings", "targets-above-headings"),
        ("Setext heading", "setext-heading"),
        ("Fine-tuning with Ray AIR", "fine-tuning-with-ray-air-a-name-train-a"),
        ("Targets above headings", "id1"),
    ]  # "Empty heading" has no body and is dropped


def test_front_matter_comments_links_and_roles_are_stripped(guide):
    assert guide.sections[0].text == "Text before the first heading."
    assert guide.sections[1].text == (
        "Some bold and emphasis, a link to docs and an image\n"
        " gone. See the tasks guide\n"
        "and ray.actor.ActorHandle.\n\n"
        "Visible again."
    )


def test_directives(guide):
    assert guide.sections[2].text == (
        "A note body stays.\n\n"
        "A colon-fenced tip.\n\n"
        "@ray.remote\ndef square(x):\n    return x * x\n\n"
        "print(ray.get([square.remote(i) for i in range(4)]))\n\n"
        "The figure caption stays."
    )
    everything = "\n".join(s.text for s in guide.sections)
    for hidden in ("toctree", "tasks/nested", ":class:", "comment", "diagram.png", "orphan", "missing.py"):
        assert hidden not in everything


def test_code_fences_keep_code_and_hide_headings(guide):
    assert guide.sections[3].text == '# not a heading inside a fence\nprint("code is kept")'


def test_a_myst_target_matching_the_slug_is_the_anchor():
    document = parse("(worker-count)=\n\n## Worker count\n\nText.\n")
    assert document.sections[0].anchor == "worker-count"


def test_anchor_style_github():
    document = parse("## Using Ray's logger\n\nText.\n", anchor_style="github")
    assert document.sections[0].anchor == "using-rays-logger"


def test_page_title_is_the_top_level_heading():
    document = parse("## Intro\n\nA.\n\n# Real title\n\nB.\n")
    assert document.title == "Real title"
    assert load_document("dir/notes.md", b"No headings here.\n").title == "notes"


def test_headings_inside_directives_are_text():
    document = parse("# T\n\n```{tab-item} Linux\n## Not a section\nBody.\n```\n")
    assert [(s.title, s.text) for s in document.sections] == [("T", "Linux\nNot a section\nBody.")]


def test_nested_fences_and_tab_labels():
    text = "# T\n\n````{tab-set}\n```{tab-item} Python\n:sync: py\n\nUse `f.remote()`.\n```\n````\n"
    assert parse(text).sections[0].text == "Python\n\nUse f.remote()."


def test_literalinclude_options_and_yaml_options():
    include = {"x.py": "a\nb\nc\nd"}.get
    text = "# T\n\n```{literalinclude} x.py\n---\nlines: 2-3\n---\n```\n"
    assert parse(text, read_include=include).sections[0].text == "b\nc"


def test_eval_rst_blocks_are_read_as_rst_and_their_titles_nest():
    text = (
        "## T\n\n```{eval-rst}\n.. note::\n\n   See :class:`ray.data.Dataset`.\n\n"
        "Getting started\n---------------\n\nStep one.\n```\n"
    )
    document = parse(text)
    assert document.title == "T"
    assert [(s.title, s.anchor, s.text) for s in document.sections] == [
        ("T", "t", "See ray.data.Dataset."),
        ("Getting started", "getting-started", "Step one."),
    ]


def test_hidden_code_cells_are_dropped():
    text = "# T\n\nShown.\n\n```{code-cell} python\n:tags: [remove-cell]\nsecret = 1\n```\n"
    assert parse(text).sections[0].text == "Shown."


def test_emphasis_spanning_lines_and_nested_markup():
    text = "# T\n\n**bold over\ntwo lines** and **[a link](x)** and snake_case_name.\n"
    assert parse(text).sections[0].text == "bold over\ntwo lines and a link and snake_case_name."


def test_tables_keep_cells_and_lose_rules():
    text = "# T\n\n| Name | Value |\n|------|:-----:|\n| x    | 1     |\n"
    assert parse(text).sections[0].text == "| Name | Value |\n| x    | 1     |"


def test_an_unclosed_fence_runs_to_the_end():
    document = parse("# T\n\n```python\n# still code\n")
    assert [(s.title, s.text) for s in document.sections] == [("T", "# still code")]


@pytest.mark.parametrize("alt", ["a screenshot", "the answer citing [1], its sources [2]"])
def test_an_image_is_not_text_even_when_its_alt_text_holds_brackets(alt):
    assert inline_text(f"Before ![{alt}](images/shot.png) after.") == "Before  after."
