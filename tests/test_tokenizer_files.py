"""The tokenizer class written for transformers 4.x readers (ropeconv/tokenizer_files.py)."""

from __future__ import annotations

from ropeconv.tokenizer_files import portable_tokenizer_config, unknown_to_transformers4


def test_transformers5_class_is_renamed_only_where_tokenizer_json_carries_it(tmp_path):
    config = {"tokenizer_class": "TokenizersBackend", "model_max_length": 8192, "backend": "tokenizers"}
    assert unknown_to_transformers4(config) == "TokenizersBackend"
    assert portable_tokenizer_config(tmp_path, config) is None  # no tokenizer.json: nothing to load instead
    (tmp_path / "tokenizer.json").write_text("{}")
    portable = portable_tokenizer_config(tmp_path, config)
    assert portable == {**config, "tokenizer_class": "PreTrainedTokenizerFast"}
    assert list(portable) == list(config)  # key order kept
    assert config["tokenizer_class"] == "TokenizersBackend"  # the input is not modified


def test_classes_transformers4_knows_are_left_alone(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{}")
    for config in ({"tokenizer_class": "LlamaTokenizer"}, {"tokenizer_class": "PreTrainedTokenizerFast"}, {}, None):
        assert unknown_to_transformers4(config) is None
        assert portable_tokenizer_config(tmp_path, config) is None
