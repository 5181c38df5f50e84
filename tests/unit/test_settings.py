import pytest
from pydantic import ValidationError

from docent.settings import ConfigFileError, Settings, load_settings


def test_defaults_name_the_index_after_model_and_chunking():
    assert Settings().index_name == "all-minilm-l6-v2-700-50"
    assert Settings(chunking={"chunk_size": 300, "unit": "tokens"}).index_name == "all-minilm-l6-v2-300t-50"


def test_environment_yaml_and_overrides_in_priority_order(tmp_path, monkeypatch):
    config = tmp_path / "docent.yaml"
    config.write_text("chunking:\n  chunk_size: 500\n  chunk_overlap: 20\nretrieval:\n  num_chunks: 7\n")
    monkeypatch.setenv("DOCENT_RETRIEVAL__NUM_CHUNKS", "9")
    monkeypatch.setenv("DATABASE_URL", "postgresql://db/docent")
    settings = load_settings(config, chunking={"chunk_size": 800, "chunk_overlap": None})
    assert settings.chunking.chunk_size == 800  # override beats the file
    assert settings.chunking.chunk_overlap == 20  # the file fills what the override left out
    assert settings.retrieval.num_chunks == 9  # the environment beats the file
    assert settings.database_url == "postgresql://db/docent"


def test_invalid_values_are_rejected_with_the_field_named():
    with pytest.raises(ValidationError, match="chunk_overlap"):
        Settings(chunking={"chunk_size": 100, "chunk_overlap": 100})
    with pytest.raises(ValidationError, match="num_chunks"):
        Settings(retrieval={"num_chunks": -1})


def test_a_missing_config_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigFileError, match="not found"):
        load_settings(tmp_path / "missing.yaml")
