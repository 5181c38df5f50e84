from __future__ import annotations

from pathlib import Path

import pytest

from ingest.anchors import AnchorAllocator, page_url, slugify, source_url

BASE = "https://docs.ray.io/en/master/"


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("Configuring batch format", "configuring-batch-format"),
        (
            "How does Ray Data compare to X for offline inference?",
            "how-does-ray-data-compare-to-x-for-offline-inference",
        ),
        ("Resource Management (CPUs, GPUs)", "resource-management-cpus-gpus"),
        ("ray.data.Dataset.iter_batches", "ray-data-dataset-iter-batches"),
        ('Fine-tuning with Ray AIR <a name="train"></a>', "fine-tuning-with-ray-air-a-name-train-a"),
        ("Über café", "uber-cafe"),
        ("transforming_data", "transforming-data"),  # labels go through the same function
        ("1. Install", "install"),  # ids cannot start with a digit
        ("???", ""),
    ],
)
def test_sphinx_slugs_are_docutils_ids(title, expected):
    assert slugify(title) == slugify(title, "sphinx") == expected


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("Using Ray's logger", "using-rays-logger"),
        ("Step 1: install `ray`", "step-1-install-ray"),
        ("snake_case and kebab-case", "snake_case-and-kebab-case"),
        ("  Trimmed  ", "trimmed"),
    ],
)
def test_github_slugs(title, expected):
    assert slugify(title, "github") == expected


def test_unknown_style_is_an_error():
    with pytest.raises(ValueError, match="anchor style"):
        slugify("x", "mkdocs")


@pytest.mark.parametrize(
    ("relpath", "base", "expected"),
    [
        ("data/transforming-data.rst", BASE, BASE + "data/transforming-data.html"),
        ("index.md", "https://docs.ray.io/en/master", BASE + "index.html"),
        ("tune/examples/pbt_guide.ipynb", BASE, BASE + "tune/examples/pbt_guide.html"),
        ("api/client.htm", BASE, BASE + "api/client.html"),
        ("api/client.html", BASE + "/", BASE + "api/client.html"),
        ("papers/ray.pdf", BASE, BASE + "papers/ray.pdf"),
        ("robots.txt", BASE, BASE + "robots.txt"),
        ("guide/README.MD", BASE, BASE + "guide/README.html"),
    ],
)
def test_page_url_under_a_base_url(relpath, base, expected):
    assert page_url(relpath, base_url=base, root=Path("/unused")) == expected


def test_page_url_without_base_url_is_the_file(tmp_path):
    assert page_url("guide/install.rst", base_url=None, root=tmp_path) == (tmp_path / "guide/install.rst").as_uri()
    assert page_url("guide/install.rst", base_url=None, root=tmp_path).startswith("file://")


def test_source_url():
    assert source_url(BASE + "a.html", "b") == BASE + "a.html#b"
    assert source_url(BASE + "a.html", None) == BASE + "a.html"


def test_sections_get_their_title_slug_like_docutils():
    anchors = AnchorAllocator()
    setup = anchors.label("configure_batch_format")
    assert setup == "configure-batch-format"
    # The label is an extra id of the section; Sphinx's <section id> is the title's.
    assert anchors.section("Configuring batch format", [setup]) == "configuring-batch-format"


def test_a_taken_slug_falls_back_to_the_label_else_a_numbered_id():
    anchors = AnchorAllocator()
    label = anchors.label("transforming_data")
    # docutils: <section id="id1"><span id="transforming-data">; the label is the steadier link.
    assert anchors.section("Transforming Data", [label]) == "transforming-data"
    assert anchors.section("Examples") == "examples"
    assert anchors.section("Examples") == "id2"
    assert anchors.section("!!!") == "id3"


def test_github_style_numbers_repeats_and_ignores_labels():
    anchors = AnchorAllocator("github")
    assert anchors.label("worker-count") is None
    assert anchors.section("Usage") == "usage"
    assert anchors.section("Usage") == "usage-1"
    assert anchors.section("Usage") == "usage-2"
    assert anchors.section("???") is None


@pytest.mark.parametrize(
    ("relpath", "style", "expected"),
    [
        ("guide/setup.md", "html", "https://d.example/v1/guide/setup.html"),
        ("guide/setup.md", "directory", "https://d.example/v1/guide/setup/"),
        ("guide/index.md", "directory", "https://d.example/v1/guide/"),
        ("index.md", "directory", "https://d.example/v1/"),
        ("guide/README.md", "directory", "https://d.example/v1/guide/"),
        ("guide/setup.mdx", "none", "https://d.example/v1/guide/setup"),
        ("files/manual.pdf", "directory", "https://d.example/v1/files/manual.pdf"),  # served as itself
    ],
)
def test_each_url_style_publishes_a_page_where_its_generator_does(relpath, style, expected):
    assert page_url(relpath, base_url="https://d.example/v1/", root=Path("/unused"), style=style) == expected
