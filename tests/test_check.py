"""`ropeconv check`: the real-config corpus with its expected findings, and every check triggered
and not triggered. Configs are real published files (tests/fixtures/configs, see SOURCES.md) or
small edits of them."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ropeconv.check import CHECKS, check_config, run_check
from ropeconv.families import FAMILIES
from ropeconv.cli import app

CORPUS = Path(__file__).parent / "fixtures" / "configs"


def load(name: str) -> dict:
    return json.loads((CORPUS / f"{name}.json").read_text())


def found(config: dict, **kw) -> set[tuple[str, str]]:
    return {(f["check"], f["severity"]) for f in check_config(config, **kw)["findings"]}


def ids(config: dict, **kw) -> set[str]:
    return {c for c, _ in found(config, **kw)}


# Each published config with exactly the findings `ropeconv check` must print for it.
EXPECTED = {
    "llama-3.1-8b-instruct": {("missing-original", "info")},
    "qwen2.5-7b-instruct": set(),
    "qwen3-8b": {("trained-shorter", "warning")},
    # vLLM serves L0 with the short factors unless --max-model-len asks for more (a verified rule)
    "phi-4-mini-instruct-4bit": {("engine-disagreement", "warning")},
    "gemma-3-4b-it": {("class-defaults", "info"), ("linear-max-multiplied", "info")},
    "deepseek-v2-lite-chat": {("integer-values", "info")},
    "deepseek-v2-lite-chat-v5-resave": {("type-and-rope-type", "warning"), ("missing-legacy-scaling", "warning"),
                                        ("integer-values", "info"), ("missing-top-theta", "info")},
    "pythia-160m": set(),
    "mistral-7b-v0.1": set(),
    "bloom-560m": {("not-rope", "info")},
    "nexus-genv2-qwen2.5-vl": {("type-and-rope-type", "warning")},
}


def test_corpus_is_complete():
    on_disk = {p.stem for p in CORPUS.glob("*.json")}
    assert on_disk == set(EXPECTED)
    sources = (CORPUS / "SOURCES.md").read_text()
    for name in on_disk:
        assert f"{name}.json" in sources, f"{name}.json has no provenance in SOURCES.md"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_published_config_findings(name):
    assert found(load(name)) == EXPECTED[name]


def test_every_check_is_exercised_by_this_file():
    """Each check has a test that expects it to fire (a (id, severity) pair or `"id" in ids(…)`), and
    one that expects it not to (`"id" not in ids(…)`) — a mere mention does not count."""
    import re

    text = Path(__file__).read_text()
    lines = text.splitlines()
    for check_id, _, _ in CHECKS:
        q = f'"{check_id}"'
        fires = any(re.search(rf'{q}, "(error|warning|info)"\)|{q} in (ids|\{{|result)|== {q}', line) for line in lines)
        quiet = any(f"{q} not in" in line or (q in line and re.search(r"assert not \{.*\} & ids\(", line))
                    for line in lines)
        assert fires, f"no test expects {check_id} to fire"
        assert quiet, f"no test expects {check_id} to stay quiet"


def test_cli_prints_findings_and_exits_1_on_errors(tmp_path):
    config = load("qwen3-8b")
    # Qwen's README says to add exactly this to config.json, leaving max_position_embeddings at 40960.
    config["rope_scaling"] = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}
    (tmp_path / "config.json").write_text(json.dumps(config))
    result = CliRunner().invoke(app, ["check", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert "yarn-factor-mismatch" in result.output and "131072" in result.output
    assert "vLLM" in result.output
    result = CliRunner().invoke(app, ["check", str(tmp_path), "--json"])
    data = json.loads(result.stdout)
    assert data["exit_code"] == 1 and data["counts"]["error"] == 1
    vllm = next(r for r in data["engines"] if r["engine"] == "vllm")
    sglang = next(r for r in data["engines"] if r["engine"] == "sglang")
    # vLLM 0.33's _get_and_verify_max_len keeps max_position_embeddings for yarn (run: test_conformance_vllm)
    assert (vllm["context"], sglang["context"]) == (40960, 40960)


def test_cli_exit_0_without_errors(tmp_path):
    (tmp_path / "config.json").write_text((CORPUS / "llama-3.1-8b-instruct.json").read_text())
    result = CliRunner().invoke(app, ["check", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "missing-original" in result.output and "transformers ≥ 5" in result.output


def test_cli_bad_input_exit_2(tmp_path):
    result = CliRunner().invoke(app, ["check", str(tmp_path / "nope")])
    assert result.exit_code == 2


# ---- each check: a config that triggers it and one that does not -------------------------------


def test_yarn_factor_mismatch():
    config = load("qwen3-8b")
    config["rope_scaling"] = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}
    assert ("yarn-factor-mismatch", "error") in found(config)
    config["max_position_embeddings"] = 131072
    assert "yarn-factor-mismatch" not in ids(config)
    assert "yarn-factor-mismatch" not in ids(load("deepseek-v2-lite-chat"))  # 4096 × 40 = 163840


def test_missing_original():
    config = load("mistral-7b-v0.1")
    config["rope_scaling"] = {"rope_type": "yarn", "factor": 4.0}
    assert ("missing-original", "error") in found(config)
    llama = load("llama-3.1-8b-instruct")
    assert ("missing-original", "info") in found(llama)  # converter default 8192 matches
    llama["rope_scaling"]["original_max_position_embeddings"] = 16384
    assert ("missing-original", "warning") in found(llama)
    llama["original_max_position_embeddings"] = 16384
    assert "missing-original" not in ids(llama)


def test_missing_original_matches_transformers_silent_default():
    """The claim: transformers v5 silently takes max_position_embeddings as L0."""
    from transformers import MistralConfig

    config = load("mistral-7b-v0.1")
    config["rope_scaling"] = {"rope_type": "yarn", "factor": 4.0}
    built = MistralConfig(**config)
    assert built.rope_parameters["original_max_position_embeddings"] == config["max_position_embeddings"]


def test_type_and_rope_type():
    assert ("type-and-rope-type", "warning") in found(load("nexus-genv2-qwen2.5-vl"))
    config = load("deepseek-v2-lite-chat")
    config["rope_scaling"]["rope_type"] = "linear"  # conflicts with type: yarn
    assert ("type-and-rope-type", "error") in found(config)
    assert "type-and-rope-type" not in ids(load("deepseek-v2-lite-chat"))


def test_stale_rope_scaling_and_transformers_uses_legacy():
    from transformers import LlamaConfig

    config = load("llama-3.1-8b-instruct")
    config["rope_parameters"] = {**config["rope_scaling"], "factor": 4.0, "rope_theta": 500000.0}
    assert ("stale-rope-scaling", "error") in found(config)
    assert LlamaConfig(**copy.deepcopy(config)).rope_parameters["factor"] == 8.0  # the legacy entry wins
    config["rope_parameters"]["factor"] = 8.0
    assert "stale-rope-scaling" not in ids(config)


def test_original_disagrees_and_transformers_uses_top_level():
    from transformers import Phi3Config

    config = load("phi-4-mini-instruct-4bit")
    config["rope_scaling"]["original_max_position_embeddings"] = 8192
    assert ("original-disagrees", "error") in found(config)
    built = Phi3Config(**{k: v for k, v in copy.deepcopy(config).items() if k != "quantization_config"})
    assert built.rope_parameters["original_max_position_embeddings"] == 4096  # top level wins
    config["rope_scaling"]["original_max_position_embeddings"] = 4096
    assert "original-disagrees" not in ids(config)


def test_linear_max_multiplied():
    config = load("mistral-7b-v0.1")
    config.update(max_position_embeddings=32768 * 4, original_max_position_embeddings=32768,
                  rope_scaling={"rope_type": "linear", "factor": 4.0})
    result = check_config(config)
    finding = next(f for f in result["findings"] if f["check"] == "linear-max-multiplied")
    assert finding["severity"] == "error" and str(32768 * 16) in finding["problem"]
    config["max_position_embeddings"] = 32768
    assert "linear-max-multiplied" not in ids(config)
    assert ("linear-max-multiplied", "info") in found(load("gemma-3-4b-it"))  # vLLM special-cases it


def test_type_not_portable():
    config = load("mistral-7b-v0.1")
    config["rope_scaling"] = {"rope_type": "dynamic", "factor": 2.0}
    finding = next(f for f in check_config(config)["findings"] if f["check"] == "type-not-portable")
    assert finding["severity"] == "warning" and "exllamav3: refused" in finding["problem"]
    config["rope_scaling"] = {"rope_type": "ntk", "factor": 2.0}
    assert ("type-not-portable", "error") in found(config)
    assert "type-not-portable" not in ids(load("mistral-7b-v0.1"))


def test_attention_factor_ignored():
    config = load("qwen2.5-7b-instruct")
    config.update(max_position_embeddings=131072,
                  rope_scaling={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768,
                                "attention_factor": 1.5})
    assert ("attention-factor-ignored", "warning") in found(config)
    config["rope_scaling"]["attention_factor"] = 0.1 * __import__("math").log(4.0) + 1
    assert ("attention-factor-ignored", "info") in found(config)  # redundant default
    del config["rope_scaling"]["attention_factor"]
    assert "attention-factor-ignored" not in ids(config)


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def transformers_warnings(build) -> str:
    """What transformers logs while `build()` runs (its own logger does not propagate to caplog)."""
    handler = _Records()
    logger = logging.getLogger("transformers")
    logger.addHandler(handler)
    try:
        build()
    finally:
        logger.removeHandler(handler)
    return "\n".join(handler.messages)


def test_integer_values_and_transformers_warnings():
    from transformers import Qwen2Config

    assert ("integer-values", "info") in found(load("deepseek-v2-lite-chat"))
    config = load("qwen2.5-7b-instruct")
    config.update(max_position_embeddings=131072,
                  rope_scaling={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768,
                                "attention_factor": 2})
    assert ("integer-values", "warning") in found(config)
    logged = transformers_warnings(lambda: Qwen2Config(**copy.deepcopy(config)))
    assert "attention_factor field must be a float" in logged  # what makes it a warning
    config["rope_scaling"]["attention_factor"] = 2.0
    assert "attention_factor" not in transformers_warnings(lambda: Qwen2Config(**copy.deepcopy(config)))
    assert "integer-values" not in ids(load("llama-3.1-8b-instruct"))


def _folder(tmp_path: Path, config: dict, tokenizer: dict | None = None) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "config.json").write_text(json.dumps(config, indent=2))
    if tokenizer is not None:
        (tmp_path / "tokenizer_config.json").write_text(json.dumps(tokenizer))
    return tmp_path


def test_tokenizer_cap(tmp_path):
    folder = _folder(tmp_path / "a", load("llama-3.1-8b-instruct"), {"model_max_length": 8192})
    result = run_check(str(folder))
    assert ("tokenizer-cap", "warning") in {(f["check"], f["severity"]) for f in result["findings"]}
    folder = _folder(tmp_path / "b", load("llama-3.1-8b-instruct"), {"model_max_length": 1e30})
    assert "tokenizer-cap" not in {f["check"] for f in run_check(str(folder))["findings"]}


def _buffer_model(tmp_path: Path, config: dict, values) -> Path:
    import numpy as np
    from safetensors.numpy import save_file

    folder = _folder(tmp_path, config)
    save_file({"gpt_neox.layers.0.attention.rotary_emb.inv_freq": np.asarray(values, dtype=np.float32),
               "gpt_neox.layers.0.attention.dense.weight": np.zeros((4, 4), dtype=np.float32)},
              str(folder / "model.safetensors"))
    return folder


def test_stored_buffers(tmp_path):
    from ropeconv.methods import base_inv_freq

    config = load("pythia-160m")  # head_dim 64 × rotary_pct 0.25 = 16 rotary dims
    base = base_inv_freq(10000.0, 16)
    folder = _buffer_model(tmp_path / "ok", config, base)
    assert "stored-buffers" not in {f["check"] for f in run_check(str(folder))["findings"]}
    scaled = dict(config, rope_scaling={"rope_type": "linear", "factor": 2.0})
    folder = _buffer_model(tmp_path / "stale", scaled, base)
    finding = next(f for f in run_check(str(folder))["findings"] if f["check"] == "stored-buffers")
    assert finding["severity"] == "warning" and "unscaled" in finding["problem"] and "TGI" in finding["engines"]


def test_longrope_length():
    config = load("phi-4-mini-instruct-4bit")
    config["rope_scaling"]["long_factor"] = config["rope_scaling"]["long_factor"][:47]
    assert ("longrope-length", "error") in found(config)
    assert "longrope-length" not in ids(load("phi-4-mini-instruct-4bit"))  # 96 rotary dims, 48 factors


def test_trained_shorter():
    assert ("trained-shorter", "warning") in found(load("qwen3-8b"))
    assert "trained-shorter" not in ids(load("qwen2.5-7b-instruct"))
    config = load("qwen3-8b")
    config.update(max_position_embeddings=131072,
                  rope_scaling={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768})
    assert "trained-shorter" not in ids(config)


def _nested_gemma(sliding: dict) -> dict:
    config = load("gemma-3-4b-it")
    text = config["text_config"]
    del text["rope_scaling"]
    text.update(layer_types=["sliding_attention"] * 5 + ["full_attention"],
                rope_parameters={"full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0},
                                 "sliding_attention": sliding})
    return config


def test_sliding_scaled():
    config = _nested_gemma({"rope_type": "linear", "factor": 8.0, "rope_theta": 10000.0})
    assert ("sliding-scaled", "warning") in found(config)
    config = _nested_gemma({"rope_type": "default", "rope_theta": 10000.0})
    assert "sliding-scaled" not in ids(config)


def test_missing_top_theta_and_legacy_scaling():
    v5 = load("deepseek-v2-lite-chat-v5-resave")
    assert ("missing-top-theta", "info") in found(v5)  # θ 10000 is what old readers fall back to
    v5["rope_parameters"]["rope_theta"] = 1000000.0
    assert ("missing-top-theta", "warning") in found(v5)
    assert ("missing-legacy-scaling", "warning") in found(v5)
    legacy = load("deepseek-v2-lite-chat")
    assert not {"missing-top-theta", "missing-legacy-scaling"} & ids(legacy)


def test_bad_values():
    config = load("phi-4-mini-instruct-4bit")
    config["rope_scaling"] = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 4096}
    config["max_position_embeddings"] = 16384
    assert ("bad-values", "error") in found(config)  # Phi3 accepts only longrope
    config = load("mistral-7b-v0.1")
    config["rope_scaling"] = {"rope_type": "linear", "factor": 0.5}
    assert ("bad-values", "error") in found(config)
    config["rope_scaling"]["factor"] = 2.0
    assert "bad-values" not in ids(config)


def test_not_rope_and_class_defaults():
    from transformers import Gemma3TextConfig

    assert found(load("bloom-560m")) == {("not-rope", "info")}
    assert "not-rope" not in ids(load("pythia-160m"))
    defaults = Gemma3TextConfig()
    family = FAMILIES["gemma3_text"]
    expected = {**dict(family.config_defaults), "rope_theta": family.default_theta,
                "rope_local_base_freq": family.local_theta}
    assert defaults.max_position_embeddings == expected["max_position_embeddings"]
    assert defaults.head_dim == expected["head_dim"]
    assert defaults.num_attention_heads == expected["num_attention_heads"]
    assert defaults.rope_parameters["full_attention"]["rope_theta"] == expected["rope_theta"]
    assert defaults.rope_parameters["sliding_attention"]["rope_theta"] == expected["rope_local_base_freq"]
    assert "class-defaults" in ids(load("gemma-3-4b-it"))
    assert "class-defaults" not in ids(load("llama-3.1-8b-instruct"))


# ---- --fix ------------------------------------------------------------------------------------------


def test_fix_writes_a_clean_copy(tmp_path):
    config = load("deepseek-v2-lite-chat")
    config["rope_scaling"]["rope_type"] = "yarn"  # both keys: exllamav2 asserts
    config["max_position_embeddings"] = 32768  # disagrees with 4096 × 40
    src = _folder(tmp_path / "src", config, {"model_max_length": 16384})
    before = (src / "config.json").read_text()
    out = tmp_path / "fixed"
    result = CliRunner().invoke(app, ["check", str(src), "--fix", "-o", str(out), "--json"])
    data = json.loads(result.stdout)
    assert result.exit_code == 0, result.output
    assert {"yarn-factor-mismatch", "type-and-rope-type", "integer-values", "tokenizer-cap"} <= set(data["fix"]["applied"])
    assert data["fix"]["after"]["counts"] == {"error": 0, "warning": 0, "info": 0}
    fixed = json.loads((out / "config.json").read_text())
    assert fixed["max_position_embeddings"] == 163840 and "type" not in fixed["rope_scaling"]
    assert fixed["rope_scaling"]["factor"] == 40.0 and isinstance(fixed["rope_scaling"]["factor"], float)
    assert json.loads((out / "tokenizer_config.json").read_text())["model_max_length"] == 163840
    assert (src / "config.json").read_text() == before  # the source is never modified


def test_fix_rewrites_stale_buffers(tmp_path):
    from ropeconv.buffers import decode, read_tensor_bytes
    from ropeconv.methods import base_inv_freq

    config = dict(load("pythia-160m"), rope_scaling={"rope_type": "linear", "factor": 2.0})
    src = _buffer_model(tmp_path / "src", config, base_inv_freq(10000.0, 16))
    result = run_check(str(src), fix=True, output=tmp_path / "out")
    assert "stored-buffers" in result["fix"]["applied"]
    assert "stored-buffers" not in {f["check"] for f in result["fix"]["after"]["findings"]}
    _, _, raw = read_tensor_bytes(tmp_path / "out" / "model.safetensors",
                                  "gpt_neox.layers.0.attention.rotary_emb.inv_freq")
    assert decode(raw, "F32")[-1] == pytest.approx(base_inv_freq(10000.0, 16)[-1] / 2, rel=1e-6)


def test_fix_needs_output(tmp_path):
    src = _folder(tmp_path / "src", load("deepseek-v2-lite-chat"))
    result = CliRunner().invoke(app, ["check", str(src), "--fix"])
    assert result.exit_code == 2 and "-o" in result.output


# ---- ropeconv's own outputs pass -----------------------------------------------------------------


@pytest.mark.parametrize("name,method,extra", [
    ("qwen2.5-7b-instruct", "yarn", []),
    ("qwen2.5-7b-instruct", "linear", []),
    ("qwen2.5-7b-instruct", "ntk", []),
    ("mistral-7b-v0.1", "llama3", []),
    ("pythia-160m", "yarn", []),
    ("qwen3-8b", "yarn", ["--original-context", "32768"]),
    ("deepseek-v2-lite-chat-v5-resave", "yarn", ["--rebase"]),
])
def test_ropeconv_outputs_have_no_errors(tmp_path, name, method, extra):
    src = _folder(tmp_path / "src", load(name), {"model_max_length": 4096})
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["extend", str(src), "--method", method, "--factor", "4", "-o", str(out),
                                      *extra])
    assert result.exit_code == 0, result.output
    checked = run_check(str(out))
    errors = [f for f in checked["findings"] if f["severity"] == "error"]
    assert errors == [] and checked["exit_code"] == 0
    warnings = {f["check"] for f in checked["findings"] if f["severity"] == "warning"}
    assert warnings <= {"type-not-portable", "engine-disagreement"}  # the latter: verified engine rules
    rows = {r["engine"]: r for r in checked["engines"]}
    assert rows["transformers5"]["inv_freq"] == "as intended"
    # both shapes written: transformers 4.x reads it as meant, except in the releases a verified rule names
    assert rows["transformers4"]["inv_freq"] == "as intended" or \
        rows["transformers4"]["inv_freq"].startswith("differs in transformers ")


# ---- GGUF ----------------------------------------------------------------------------------------


def _gguf(path: Path, *, context: int, original: int | None, factor: float = 4.0, kind=None) -> Path:
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(context)
    writer.add_embedding_length(256)
    writer.add_block_count(1)
    writer.add_feed_forward_length(512)
    writer.add_head_count(4)
    writer.add_rope_dimension_count(64)
    writer.add_rope_freq_base(10000.0)
    writer.add_rope_scaling_type(kind if kind is not None else gguf.RopeScalingType.YARN)
    writer.add_rope_scaling_factor(factor)
    if original is not None:
        writer.add_rope_scaling_orig_ctx_len(original)
    writer.add_tensor("token_embd.weight", np.zeros((8, 256), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_gguf_checks(tmp_path):
    pytest.importorskip("gguf")
    good = run_check(str(_gguf(tmp_path / "good.gguf", context=32768, original=8192)))
    assert good["findings"] == [] and good["exit_code"] == 0
    no_original = run_check(str(_gguf(tmp_path / "a.gguf", context=32768, original=None)))
    assert {(f["check"], f["severity"]) for f in no_original["findings"]} == {("gguf-yarn-original", "error")}
    short = run_check(str(_gguf(tmp_path / "b.gguf", context=8192, original=8192)))
    assert [f["check"] for f in short["findings"]] == ["gguf-yarn-context"] and short["exit_code"] == 1
    result = CliRunner().invoke(app, ["check", str(tmp_path / "b.gguf")])
    assert result.exit_code == 1 and "llama-server caps the context" in result.output
    flat = run_check(str(_gguf(tmp_path / "c.gguf", context=8192, original=8192, factor=1.0)))
    assert "gguf-factor" in {f["check"] for f in flat["findings"]}


def test_engine_disagreement_names_the_engine_release_and_what_it_computes():
    """A verified rule (ropeconv.engines.RULES, held against the engines by tests/test_conformance_*.py)
    becomes a warning naming the engine, its releases and what it computes instead."""
    config = load("qwen2.5-7b-instruct")
    config["rope_scaling"] = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}
    config["max_position_embeddings"] = 131072
    assert "engine-disagreement" in ids(config)
    (finding,) = [f for f in check_config(config)["findings"] if f["check"] == "engine-disagreement"]
    assert finding["engines"] == ["transformers 4.45–4.50"]
    assert "max_position_embeddings" in finding["problem"] and "4.46.3" in finding["problem"]
    row = next(r for r in check_config(config)["engines"] if r["engine"] == "transformers4")
    assert row["inv_freq"] == "differs in transformers 4.45–4.50"
    # Llama 3.1's own llama3 scaling: no engine release reads it differently
    assert "engine-disagreement" not in ids(load("llama-3.1-8b-instruct"))


def test_check_renders_at_80_columns_without_breaking_words(tmp_path):
    """Findings, the engine table and its notes wrap between words at 80 columns; the serve block's
    commands are never wrapped (each whole on its line, to copy), however long."""
    import os
    import re
    import subprocess
    import sys

    config = load("qwen2.5-7b-instruct")
    config["rope_scaling"] = {"rope_type": "linear", "factor": 4.0}
    src = _folder(tmp_path / "src", config, {"model_max_length": 131072})
    env = {**os.environ, "COLUMNS": "80", "NO_COLOR": "1", "TERM": "dumb"}
    shown = subprocess.run([sys.executable, "-m", "ropeconv", "check", str(src)], capture_output=True, text=True,
                           env=env).stdout
    result = check_config(config, model=str(src))
    commands = [line["command"] for line in result["launch"]]
    assert all("    " + command in shown.splitlines() for command in commands), shown
    assert max(len(line.rstrip()) for line in shown.splitlines() if line.strip() not in commands) <= 80
    assert "…" not in shown  # nothing cut short
    words = {w for f in result["findings"] for w in re.split(r"\s+", f["problem"]) if len(w) > 3}
    words |= {w for r in result["engines"] for n in r["notes"] for w in n.split() if len(w) > 3}
    flat = shown.split()
    missing = sorted(w for w in words if w not in flat)
    assert not missing, missing  # every word of every finding and note appears whole


def test_tokenizer_class_transformers4_does_not_know(tmp_path):
    """transformers 5 writes tokenizer_class TokenizersBackend; llama.cpp's converter (transformers 4.57.6)
    and every 4.x-based engine refuse it. --fix writes the 4.x name where tokenizer.json is there."""
    config = load("qwen2.5-7b-instruct")
    v5 = {"tokenizer_class": "TokenizersBackend", "model_max_length": 131072}
    assert ("tokenizer-class", "warning") in found(config, tokenizer=v5)
    assert "tokenizer-class" not in ids(config, tokenizer={**v5, "tokenizer_class": "Qwen2TokenizerFast"})
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text(json.dumps(config))
    (src / "tokenizer_config.json").write_text(json.dumps(v5))
    (src / "tokenizer.json").write_text("{}")
    result = run_check(str(src), fix=True, output=tmp_path / "fixed")
    assert "tokenizer-class" in result["fix"]["applied"]
    fixed = json.loads((tmp_path / "fixed" / "tokenizer_config.json").read_text())
    assert fixed == {**v5, "tokenizer_class": "PreTrainedTokenizerFast"}
    assert json.loads((src / "tokenizer_config.json").read_text()) == v5  # the source is untouched


def test_output_without_fix_is_refused(tmp_path):
    """`check -o DIR` without --fix used to ignore -o silently."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text(json.dumps(load("qwen2.5-7b-instruct")))
    result = CliRunner().invoke(app, ["check", str(src), "-o", str(tmp_path / "out")])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and "--fix" in lines[0] and lines[0].startswith("error: ")
    assert not (tmp_path / "out").exists()


def test_check_prints_each_finding_once():
    """A finding reported twice (same check, key and problem) is printed once."""
    from ropeconv.cli.check import _print_findings
    from ropeconv.cli.common import console

    out = console()
    finding = {"check": "tokenizer-cap", "severity": "warning", "key": "k", "problem": "the problem", "fix": "f",
               "engines": [], "auto_fix": False}
    with out.capture() as captured:
        _print_findings(out, [finding, dict(finding), {**finding, "key": "other"}])
    assert captured.get().count("the problem") == 2
