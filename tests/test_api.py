"""extend's files: config patching, stored buffers, hard links, atomic output, refusals."""

from __future__ import annotations

import json
import os
import struct

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import build_tiny, rel_err
from ropeconv import api
from ropeconv.buffers import decode, find_buffers, read_tensor_bytes
from ropeconv.errors import RopeconvError
from ropeconv.formats.hf import plan_config
from ropeconv.request import ConversionRequest


def _snapshot(folder):
    """Every file's bytes and mtime, to prove a source is untouched."""
    return {p.relative_to(folder).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _old_llama_with_buffers(folder, *, shards=2, cos_sin=False, dtype=torch.float32):
    """A checkpoint as transformers ≤ 4.31 saved it: rotary inv_freq (and caches) in the weights."""
    src = build_tiny("llama", folder, num_hidden_layers=4)
    state = load_file(src / "model.safetensors")
    inv = 1.0 / (10000 ** (torch.arange(0, 16, 2).float() / 16))
    for i in range(4):
        state[f"model.layers.{i}.self_attn.rotary_emb.inv_freq"] = inv.to(dtype).clone()
        if cos_sin:
            t = torch.arange(64).float()[:, None] * inv[None, :]
            emb = torch.cat([t, t], dim=-1)
            state[f"model.layers.{i}.self_attn.rotary_emb.cos_cached"] = emb.cos()[None, None].to(dtype)
            state[f"model.layers.{i}.self_attn.rotary_emb.sin_cached"] = emb.sin()[None, None].to(dtype)
    (src / "model.safetensors").unlink()
    names = sorted(state)
    per = -(-len(names) // shards)
    weight_map = {}
    for s in range(shards):
        part = {k: state[k].contiguous() for k in names[s * per:(s + 1) * per]}
        fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        save_file(part, src / fname, metadata={"format": "pt"})
        weight_map.update({k: fname for k in part})
    (src / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}, indent=2))
    return src


def test_config_patch_keeps_unrelated_keys_and_order(tiny, tmp_path):
    src = tiny("llama")
    before = json.loads((src / "config.json").read_text())
    api.extend(str(src), "yarn", factor=8, output=tmp_path / "out")
    after = json.loads((tmp_path / "out" / "config.json").read_text())
    touched = {"rope_parameters", "rope_scaling", "rope_theta", "max_position_embeddings"}
    assert [k for k in after if k in before] == list(before)  # original order kept
    assert {k: v for k, v in after.items() if k not in touched} == {k: v for k, v in before.items() if k not in touched}
    assert after["rope_parameters"] == {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 8.0,
                                        "original_max_position_embeddings": 4096}
    assert after["rope_scaling"] == {"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": 4096}
    assert after["max_position_embeddings"] == 32768 and isinstance(after["rope_theta"], float)
    assert "type" not in after["rope_scaling"]


@pytest.mark.parametrize("method,max_pos,top_original", [
    ("linear", 4096, None), ("dynamic", 4096, None), ("ntk", 16384, None), ("yarn", 16384, None),
    ("llama3", 16384, 4096),
])
def test_max_position_rules_per_method(tiny, tmp_path, method, max_pos, top_original):
    out = tmp_path / "out"
    api.extend(str(tiny("llama")), method, factor=4, output=out)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["max_position_embeddings"] == max_pos
    assert cfg.get("original_max_position_embeddings") == top_original


def test_target_context_and_original_context(tiny, tmp_path):
    src = tiny("qwen3")  # advertises 40960, trained at 32768
    report = api.extend(str(src), "yarn", target_context="128k", original_context=32768, output=tmp_path / "o")
    assert report["factor"] == 4.0 and report["served_context"] == 131072
    report = api.extend(str(src), "yarn", factor=2, dry_run=True)
    assert any("trained at 32768" in w and "--original-context 32768" in w for w in report["warnings"])


def test_tokenizer_max_length_raised(tiny, tmp_path):
    src = tiny("llama")
    (src / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 4096, "padding_side": "left"}))
    api.extend(str(src), "yarn", factor=4, output=tmp_path / "o")
    tok = json.loads((tmp_path / "o" / "tokenizer_config.json").read_text())
    assert tok == {"model_max_length": 16384, "padding_side": "left"}


def test_every_other_file_is_carried_and_weights_are_hard_linked(tiny, tmp_path):
    src = tiny("llama")
    (src / "tokenizer.json").write_text("{}")
    (src / "LICENSE").write_text("license text")
    (src / "code").mkdir()
    (src / "code" / "modeling_custom.py").write_text("# remote code")
    snap = _snapshot(src)
    report = api.extend(str(src), "linear", factor=2, output=tmp_path / "o")
    out = tmp_path / "o"
    for rel in ("tokenizer.json", "LICENSE", "code/modeling_custom.py", "generation_config.json"):
        assert (out / rel).read_bytes() == (src / rel).read_bytes()
    assert os.stat(out / "model.safetensors").st_ino == os.stat(src / "model.safetensors").st_ino
    assert report["files"]["linked"] >= 4 and report["files"]["rewritten"] == []
    report = api.extend(str(src), "linear", factor=2, output=tmp_path / "c", copy=True)
    assert os.stat(tmp_path / "c" / "model.safetensors").st_ino != os.stat(src / "model.safetensors").st_ino
    assert report["files"]["linked"] == 0
    assert _snapshot(src) == snap


def test_record_describes_the_conversion(tiny, tmp_path):
    src = tiny("llama")
    api.extend(str(src), "yarn", factor=4, params={"beta_fast": 16}, output=tmp_path / "o")
    record = json.loads((tmp_path / "o" / "ropeconv.json").read_text())
    assert record["method"] == "yarn" and record["factor"] == 4.0 and record["params"] == {"beta_fast": 16.0}
    assert record["source"]["kind"] == "local" and record["source"]["config_sha256"].startswith("sha256:")
    assert record["before"]["rope_type"] == "default" and record["after"]["rope_type"] == "yarn"
    assert record["ropeconv_version"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_buffers_rewritten_in_float32_and_other_shards_identical(tmp_path, dtype):
    src = _old_llama_with_buffers(tmp_path / "src", shards=3, cos_sin=True, dtype=dtype)
    found = find_buffers(src)
    assert len(found) == 12 and {b.kind for b in found} == {"inv_freq", "cos", "sin"}
    snap = _snapshot(src)
    out = tmp_path / "out"
    report = api.extend(str(src), "yarn", factor=4, output=out)
    plan = plan_config(json.loads((src / "config.json").read_text()), ConversionRequest.build("yarn", factor=4))
    touched = {b.file for b in found}
    for b in find_buffers(out):
        dt, shape, raw = read_tensor_bytes(out / b.file, b.name)
        values = decode(raw, dt)
        if b.kind == "inv_freq":
            assert dt == "F32" and rel_err(values, plan.rope.inv_freq) < 1e-6
        else:
            angles = [p * f for p in range(shape[-2]) for f in plan.rope.inv_freq * 2]
            import math
            ref = [(math.cos(a) if b.kind == "cos" else math.sin(a)) * plan.rope.attention_factor for a in angles]
            tol = 1e-2 if dtype == torch.bfloat16 else 1e-5
            assert max(abs(x - y) for x, y in zip(values, ref)) < tol and dt == b.dtype
    # every other tensor is byte-identical, and shards without buffers are hard links
    for shard in json.loads((src / "model.safetensors.index.json").read_text())["weight_map"].values():
        a, b = load_file(src / shard), load_file(out / shard)
        for k in a:
            if "rotary_emb" not in k:
                assert torch.equal(a[k], b[k])
        if shard not in touched:
            assert os.stat(src / shard).st_ino == os.stat(out / shard).st_ino
    assert sorted(report["files"]["rewritten"]) == sorted(touched)
    assert _snapshot(src) == snap


def test_buffers_drop_and_keep(tmp_path):
    src = _old_llama_with_buffers(tmp_path / "src", shards=2)
    api.extend(str(src), "linear", factor=2, output=tmp_path / "drop", buffers="drop")
    assert find_buffers(tmp_path / "drop") == []
    index = json.loads((tmp_path / "drop" / "model.safetensors.index.json").read_text())
    assert not any("rotary_emb" in k for k in index["weight_map"])
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(tmp_path / "drop")  # still loads
    api.extend(str(src), "linear", factor=2, output=tmp_path / "keep", buffers="keep")
    for shard in {b.file for b in find_buffers(src)}:
        assert os.stat(src / shard).st_ino == os.stat(tmp_path / "keep" / shard).st_ino
    assert (tmp_path / "keep" / "model.safetensors.index.json").read_bytes() == \
           (src / "model.safetensors.index.json").read_bytes()


def test_bin_checkpoint_with_buffers_loaded_weights_only(tmp_path):
    src = build_tiny("llama", tmp_path / "src")
    state = load_file(src / "model.safetensors")
    state["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(8)
    (src / "model.safetensors").unlink()
    torch.save(state, src / "pytorch_model.bin")
    plain = build_tiny("llama", tmp_path / "plain")
    torch.save(load_file(plain / "model.safetensors"), plain / "pytorch_model.bin")
    (plain / "model.safetensors").unlink()

    report = api.extend(str(src), "yarn", factor=4, output=tmp_path / "out")
    assert report["files"]["rewritten"] == ["pytorch_model.bin"]
    new = torch.load(tmp_path / "out" / "pytorch_model.bin", weights_only=True)
    assert rel_err(new["model.layers.0.self_attn.rotary_emb.inv_freq"].double().tolist(),
                   plan_config(json.loads((src / "config.json").read_text()), ConversionRequest.build("yarn", factor=4)).rope.inv_freq) < 1e-6
    report = api.extend(str(plain), "yarn", factor=4, output=tmp_path / "plain-out")  # no buffers: linked, not read
    assert report["files"]["rewritten"] == [] and report["buffers"]["pickled_shards"] == []


def test_already_scaled_is_refused_then_rebased(tiny, tmp_path):
    src = tiny("llama")
    api.extend(str(src), "linear", factor=2, output=tmp_path / "x2")
    with pytest.raises(RopeconvError, match=r"already scaled \(linear ×2.*--rebase"):
        api.extend(str(tmp_path / "x2"), "yarn", factor=4, output=tmp_path / "x8")
    assert not (tmp_path / "x8").exists()
    report = api.extend(str(tmp_path / "x2"), "yarn", factor=4, output=tmp_path / "x8", rebase=True)
    assert report["after"]["original_context"] == 4096 and report["served_context"] == 16384
    # NTK leaves a plain config: the record of the earlier conversion still stops stacking
    api.extend(str(src), "ntk", factor=2, output=tmp_path / "ntk")
    with pytest.raises(RopeconvError, match="already scaled .*ntk by ropeconv"):
        api.extend(str(tmp_path / "ntk"), "ntk", factor=2, output=tmp_path / "ntk2")
    report = api.extend(str(tmp_path / "ntk"), "yarn", factor=2, output=tmp_path / "ntk-yarn", rebase=True)
    assert report["after"]["rope_theta"] == 10000.0


def test_dry_run_writes_nothing(tiny, tmp_path):
    src = tiny("llama")
    snap = _snapshot(src)
    report = api.extend(str(src), "yarn", factor=4, output=tmp_path / "o", dry_run=True)
    assert report["dry_run"] and not (tmp_path / "o").exists()
    assert any(line.startswith("+") and '"max_position_embeddings": 16384' in line for line in report["config_diff"])
    assert _snapshot(src) == snap and os.listdir(tmp_path) == [src.name]


def test_default_output_name_and_force(tiny, tmp_path):
    src = tiny("llama")
    report = api.extend(str(src), "yarn", factor=4)
    assert report["output"] == str(src.parent / f"{src.name}-yarn-x4")
    with pytest.raises(RopeconvError, match="already exists.*--force"):
        api.extend(str(src), "yarn", factor=4)
    (src.parent / f"{src.name}-yarn-x4" / "stale.txt").write_text("old")
    api.extend(str(src), "yarn", factor=4, force=True)
    assert not (src.parent / f"{src.name}-yarn-x4" / "stale.txt").exists()
    assert not [p for p in src.parent.iterdir() if "ropeconv-" in p.name]  # no temp folders left
    # a dry run says where it would write and that the output exists, rather than refusing
    report = api.extend(str(src), "yarn", factor=4, dry_run=True)
    assert report["output"] == str(src.parent / f"{src.name}-yarn-x4") and report["output_exists"] is True
    assert api.extend(str(src), "yarn", factor=8, dry_run=True)["output_exists"] is False


def test_human_reports_say_where_and_what_was_written(tiny, tmp_path):
    import os
    import subprocess
    import sys

    src = tiny("llama")
    env = {**os.environ, "COLUMNS": "200"}
    run = lambda *a: subprocess.run([sys.executable, "-m", "ropeconv", "extend", str(src), "-m", "yarn", "-f", "4",  # noqa: E731
                                     "-o", str(tmp_path / "o"), *a], capture_output=True, text=True, env=env)
    dry = run("--dry-run")
    assert dry.returncode == 0 and f"dry run: would write {tmp_path / 'o'}" in dry.stdout
    done = run()
    # config.json and ropeconv.json are new content, the weights are linked
    assert done.returncode == 0 and "files: 2 hard-linked, 0 copied, 2 rewritten" in done.stdout


# --- bad input: one line, exit code 2, nothing written, source untouched -------------------------

def _corrupt_header(folder):
    path = folder / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(struct.pack("<Q", 10**12) + data[8:])


def _index_outside(folder):
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "../../etc/passwd"}}))


BAD = {
    "missing config": (lambda f: (f / "config.json").unlink(), {}, "has no config.json"),
    "invalid config": (lambda f: (f / "config.json").write_text("{not json"), {}, "is not valid JSON"),
    "unknown method": (None, {"method": "yarm"}, "did you mean 'yarn'"),
    "factor <= 1": (None, {"factor": "0.5"}, "must be greater than 1"),
    "factor nan": (None, {"factor": "nan"}, "not a finite number"),
    "factor inf": (None, {"factor": "inf"}, "not a finite number"),
    "factor text": (None, {"factor": "four"}, "is not a number"),
    "odd head_dim": (lambda f: _edit(f, head_dim=15), {}, "rotary dimension 15"),
    "longrope wrong length": (None, {"method": "longrope", "params": {"short_factor": [1.0], "long_factor": [1.0]}},
                              "has 1 numbers but this model has 8"),
    "corrupt safetensors": (_corrupt_header, {}, "not a valid safetensors file"),
    "index outside folder": (_index_outside, {}, "outside the model folder"),
    "alibi model": (lambda f: _edit(f, model_type="bloom"), {}, "ALiBi"),
    "absolute model": (lambda f: _edit(f, model_type="gpt2"), {}, "absolute position"),
    "falcon alibi": (lambda f: _edit(f, model_type="falcon", alibi=True), {}, "ALiBi"),
    "unknown type, no rope fields": (lambda f: _write(f, {"model_type": "mamba_x", "hidden_size": 64}), {},
                                     "unknown to ropeconv and its config.json has no RoPE fields"),
    "no max_position_embeddings": (lambda f: _drop(f, "max_position_embeddings"), {}, "no max_position_embeddings"),
    "no head_dim": (lambda f: _drop(f, "head_dim", "hidden_size"), {}, "neither head_dim nor hidden_size"),
    "theta <= 1": (lambda f: _edit(f, rope_parameters={"rope_type": "default", "rope_theta": 1.0}), {},
                   "must be greater than 1"),
    "partial > 1": (lambda f: _edit(f, partial_rotary_factor=1.5), {}, "outside \\(0, 1\\]"),
    "unreadable config": (lambda f: (f / "config.json").write_bytes(b"\xff\xfe\x00"), {}, "cannot read"),
}


def _write(folder, config):
    (folder / "config.json").write_text(json.dumps(config))


def _drop(folder, *keys):
    cfg = json.loads((folder / "config.json").read_text())
    for key in keys:
        cfg.pop(key, None)
    _write(folder, cfg)


def _edit(folder, **changes):
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(changes)
    (folder / "config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input(tiny, tmp_path, case):
    breaker, kwargs, message = BAD[case]
    src = tiny("llama")
    if breaker:
        breaker(src)
    snap = _snapshot(src)
    kwargs = {"method": "yarn", "factor": "4", **kwargs}
    with pytest.raises(RopeconvError, match=message) as err:
        api.extend(str(src), kwargs.pop("method"), output=tmp_path / "out", **kwargs)
    assert "\n" not in str(err.value) and " — " in str(err.value)  # one line: problem — fix
    assert not (tmp_path / "out").exists() and _snapshot(src) == snap
    assert not [p for p in tmp_path.iterdir() if "ropeconv-" in p.name]


def test_unknown_model_type_with_rope_fields_warns(tiny, tmp_path):
    src = tiny("llama")
    _edit(src, model_type="brand_new_lm")
    report = api.extend(str(src), "yarn", factor=2, dry_run=True)
    assert any("unknown to ropeconv" in w for w in report["warnings"])


def test_permission_denied(tiny, tmp_path):
    """A real EPERM, even for root: the destination's parent is made immutable (chattr +i)."""
    import subprocess

    src = tiny("llama")
    locked = tmp_path / "locked"
    locked.mkdir()
    if subprocess.run(["chattr", "+i", str(locked)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here")
    try:
        with pytest.raises(RopeconvError, match="permission denied"):
            api.extend(str(src), "yarn", factor=2, output=locked / "out")
        assert os.listdir(locked) == []
    finally:
        subprocess.run(["chattr", "-i", str(locked)], check=True)


def test_disk_full_leaves_nothing(tiny, tmp_path):
    """A real ENOSPC on a 64 KiB tmpfs: one line, exit 2, nothing under the destination name."""
    import subprocess

    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        src = tiny("llama")
        with pytest.raises(RopeconvError, match="disk full while writing .* free space"):
            api.extend(str(src), "yarn", factor=2, output=mount / "out", copy=True)
        assert os.listdir(mount) == []
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_chained_rebases_keep_the_unscaled_base(tiny, tmp_path):
    """ntk → (rebase) yarn → (rebase) linear: every step scales from the original θ and L0."""
    src = tiny("llama")
    api.extend(str(src), "ntk", factor=4, output=tmp_path / "a")
    api.extend(str(tmp_path / "a"), "yarn", factor=2, output=tmp_path / "b", rebase=True)
    report = api.extend(str(tmp_path / "b"), "linear", factor=8, output=tmp_path / "c", rebase=True)
    assert report["after"]["rope_theta"] == 10000.0 and report["served_context"] == 8 * 4096
    record = json.loads((tmp_path / "c" / "ropeconv.json").read_text())
    assert record["base"] == {"rope_theta": 10000.0, "original_context": 4096}


@pytest.mark.parametrize("style", ["compact", "tabs", "four"])
def test_patched_config_keeps_the_source_formatting(tiny, tmp_path, style):
    src = tiny("llama")
    cfg = json.loads((src / "config.json").read_text())
    text = {"compact": json.dumps(cfg), "tabs": json.dumps(cfg, indent="\t"), "four": json.dumps(cfg, indent=4)}[style]
    (src / "config.json").write_text(text + "\n")
    api.extend(str(src), "yarn", factor=2, output=tmp_path / "o")
    out = (tmp_path / "o" / "config.json").read_text()
    if style == "compact":
        assert out.count("\n") == 1
    else:
        assert out.splitlines()[1].startswith("\t" if style == "tabs" else "    \"")


@pytest.mark.parametrize("value,expected", [("64k", 65536), (" 64k ", 65536), ("4.5k", 4608), ("128_000", 128000),
                                            (131072, 131072)])
def test_target_context_parsing(tiny, value, expected):
    report = api.extend(str(tiny("llama")), "yarn", target_context=value, dry_run=True)
    assert report["served_context"] == expected


@pytest.mark.parametrize("value,message", [("1k2", "not a whole number of tokens"), ("k128", "not a whole number"),
                                           ("64kk", "not a whole number"), ("4096", "not longer than the trained"),
                                           ("4097.5", "not a whole number")])
def test_bad_target_context(tiny, value, message):
    with pytest.raises(RopeconvError, match=message):
        api.extend(str(tiny("llama")), "yarn", target_context=value, dry_run=True)


def test_factor_that_gives_fractional_tokens_is_refused(tiny):
    with pytest.raises(RopeconvError, match=r"5324.8 is not a whole number of tokens.*target context instead \(e.g. 5325\)"):
        api.extend(str(tiny("llama")), "yarn", factor="1.3", dry_run=True)
    # a factor so close to 1 that no token is added: no suggestion that would itself be refused
    with pytest.raises(RopeconvError, match="adds no whole token — give a factor such as 2"):
        api.extend(str(tiny("llama")), "yarn", factor="1.00001", dry_run=True)
