"""The record: the one reader and writer of ropeconv.json and of the GGUF ropeconv.* keys."""

from __future__ import annotations

import json

from ropeconv import api
from ropeconv.record import (RECORD_NAME, Base, Record, gguf_base, gguf_record_keys, read_folder_record,
                             read_spec_with_record)


def test_an_extend_output_reads_back_as_a_typed_record(tiny, tmp_path):
    out = tmp_path / "out"
    api.extend(str(tiny("llama")), "ntk", factor=4, output=out)
    record = read_folder_record(out)
    assert isinstance(record, Record) and (record.method, record.factor, record.original_context) == ("ntk", 4.0, 4096)
    assert record.base == Base("ntk", 10000.0, 4096)
    assert Record.from_json(record.to_json()) == record  # what is written is what is read


def test_ntk_outputs_keep_their_trained_context_through_the_record(tiny, tmp_path):
    out = tmp_path / "out"
    api.extend(str(tiny("llama")), "ntk", factor=4, output=out)
    config = json.loads((out / "config.json").read_text())
    assert config["max_position_embeddings"] == 16384 and "rope_scaling" not in config or not config["rope_scaling"]
    spec = read_spec_with_record(out, config)
    assert spec.original_context == 4096 and RECORD_NAME in spec.original_context_source
    assert api.inspect(str(out))["spec"]["original_context"] == 4096
    from ropeconv.check import check_folder

    assert check_folder(out)["rope"]["original_context"] == 4096  # check judges it from the real L0 too


def test_other_sections_survive_and_bad_records_are_none(tmp_path):
    data = {"method": "yarn", "factor": 4, "base": {"rope_theta": 1e4, "original_context": 8192}, "batch": {"x": 1}}
    assert Record.from_json(data).to_json()["batch"] == {"x": 1}
    assert Record.from_json({"method": "yarn"}) is None  # no base: not a record a conversion can use
    (tmp_path / RECORD_NAME).write_text("[1, 2]")
    assert read_folder_record(tmp_path) is None


def test_gguf_keys_round_trip():
    keys = gguf_record_keys("yarn", 4.0, 1e5, 8192, "0.2.0")
    kv = {name: value for name, (_, value) in keys.items()}
    assert gguf_base(kv) == Base("yarn", 1e5, 8192)
    assert gguf_base({"general.name": "x"}) is None


def test_a_config_with_both_shapes_says_so():
    from ropeconv.spec import read_spec

    v5 = {"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4, "max_position_embeddings": 4096,
          "rope_parameters": {"rope_type": "default", "rope_theta": 1e4}}
    assert read_spec(v5).shape == "v5"
    assert read_spec({**v5, "rope_theta": 1e4, "rope_scaling": None}).shape == "both"  # as transformers 5 saves
