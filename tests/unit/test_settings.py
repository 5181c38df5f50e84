from pathlib import Path

import pytest
from pydantic import ValidationError

from docent.settings import ConfigFileError, Settings, load_settings


def test_defaults_name_the_index_after_model_and_chunking():
    assert Settings().index_name == "all-minilm-l6-v2-300-50"
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


def test_the_example_config_lists_the_defaults(monkeypatch):
    """config/docent.example.yaml documents every default: it must not drift from the code."""

    import yaml

    for name in ("DATABASE_URL", "REDIS_URL", "RAY_ADDRESS", "DOCENT_DATA_DIR", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    example = Path(__file__).resolve().parents[2] / "config" / "docent.example.yaml"
    values = yaml.safe_load(example.read_text())
    defaults = Settings().model_dump()
    for section, expected in values.items():
        if isinstance(expected, dict):
            assert set(expected) <= set(defaults[section]), f"unknown keys in {section}"
            for key, value in expected.items():
                assert defaults[section][key] == value, f"{section}.{key}"
        elif section != "data_dir":
            assert defaults[section] == expected, section
    documented = {s for s, v in values.items() if isinstance(v, dict)}
    assert documented == {s for s, v in defaults.items() if isinstance(v, dict)}


def test_a_malformed_config_file_is_a_clear_error(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("chunking: [unclosed\n")
    with pytest.raises(ConfigFileError, match="not valid YAML"):
        load_settings(config)


def test_the_llm_example_config_loads():
    example = Path(__file__).resolve().parents[2] / "config" / "llms.example.yaml"
    settings = load_settings(example)
    names = [llm.name for llm in settings.generation.llms]
    assert settings.generation.oss_llm in names and settings.generation.strong_llm in names
