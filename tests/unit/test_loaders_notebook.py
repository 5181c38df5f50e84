from __future__ import annotations

import json
from pathlib import Path

import pytest

from docent.types import UnreadableDocument
from ingest.loaders import load_document

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "docs"


def notebook(*cells: dict, nbformat: int = 4, minor: int = 2) -> bytes:
    return json.dumps({"cells": list(cells), "metadata": {}, "nbformat": nbformat, "nbformat_minor": minor}).encode()


def test_markdown_cells_make_sections_and_code_joins_them():
    document = load_document("notebook.ipynb", (FIXTURES / "notebook.ipynb").read_bytes())
    assert document.title == "Batch inference notebook"
    assert [(s.title, s.anchor, s.text) for s in document.sections] == [
        (
            "Batch inference notebook",
            "batch-inference-notebook",
            "This notebook runs batch inference with Ray Data.\n\nimport ray\nds = ray.data.range(8)",
        ),
        (
            "Set up the model",
            "set-up-the-model",
            "Load a model once per actor:\n\nclass Model:\n    def __call__(self, batch):\n        return batch",
        ),
        (
            "Fine-tuning the model with Ray AIR",
            "fine-tuning-the-model-with-ray-air-a-name-train-a",
            "Scale the predictor:\n\nds.map_batches(Model, compute=ray.data.ActorPoolStrategy(size=2))",
        ),
    ]
    text = "\n".join(s.text for s in document.sections)
    assert "never indexed" not in text  # outputs
    assert "secret" not in text  # a remove-cell tag
    assert "raw cells" not in text


def test_source_may_be_one_string_and_a_fence_does_not_leak_into_the_next_cell():
    data = notebook(
        {"cell_type": "markdown", "metadata": {}, "source": "# Title\n\n```python\nunclosed"},
        {"cell_type": "markdown", "metadata": {}, "source": ["## Next\n", "Body."]},
    )
    assert [(s.title, s.text) for s in load_document("n.ipynb", data).sections] == [
        ("Title", "unclosed"),
        ("Next", "Body."),
    ]


def test_without_headings_the_stem_is_the_title():
    data = notebook({"cell_type": "code", "metadata": {}, "outputs": [], "source": "print(1)"})
    document = load_document("dir/scratch.ipynb", data)
    assert document.title == "scratch" and document.sections[0].text == "print(1)"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b'{"cells": [', "malformed notebook JSON"),
        (b"[1, 2]", "not a Jupyter notebook"),
        (b'{"metadata": {}}', "not a Jupyter notebook"),
        (notebook(nbformat=3), "unsupported notebook format 3"),
        (notebook({"source": "x"}), "cell without a cell_type"),
        (notebook({"cell_type": "markdown", "source": 5}), "not text"),
        (notebook({"cell_type": "markdown", "source": "   "}), "no text"),
    ],
)
def test_malformed_notebooks_are_unreadable(data, reason):
    with pytest.raises(UnreadableDocument, match=reason):
        load_document("bad.ipynb", data)
