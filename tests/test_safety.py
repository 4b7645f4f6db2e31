"""The attack cases of issue 12: a careless user, a hostile folder and a broken file each get exit 2 (or 3)
and one `error:` line naming the problem and the fix — never a traceback, never exit 4 — with the source
byte-identical and nothing under the destination name. Run in-process through the CLI (typer's CliRunner).

Stubs: none. Every folder and file is real; GGUF files are written with the gguf package's own writer.
"""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path

import pytest
from typer.testing import CliRunner

from model_files import CONFIG, debris, snapshot, write_model
from ropeconv.cli import app

SENTINEL = b"SENTINEL-6b1f0c: must never be read into an output"


def cli(*args: str, env: dict | None = None):
    result = CliRunner().invoke(app, [str(a) for a in args], env=env)
    return result.exit_code, result.stdout, result.stderr


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ") and " — " in lines[0], lines[0]
    assert "Traceback" not in stderr and "internal error" not in stderr
    return lines[0]


def refused(*args, code: int = 2, mention: str | None = None, env: dict | None = None) -> str:
    rc, _, err = cli(*args, env=env)
    line = one_error_line(err)
    assert rc == code, (rc, err)
    if mention:
        assert mention.lower() in line.lower(), line
    return line


@pytest.fixture
def model(tmp_path):
    return write_model(tmp_path / "models" / "base")


def with_config(folder: Path, **changes) -> Path:
    cfg = {**CONFIG, **changes}
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


def extend_refused(src: Path, *extra, mention=None, code=2) -> str:
    out = src.parent / "out"
    before = snapshot(src)
    line = refused("extend", src, "-m", "yarn", "-f", "4", "-o", out, *extra, mention=mention, code=code)
    assert not out.exists() and snapshot(src) == before and debris(src.parent) == []
    return line


# -- high: the destination ------------------------------------------------------------------------------

def test_an_output_that_contains_the_source_is_refused_even_with_force(model):
    before = snapshot(model)
    refused("extend", model, "-m", "yarn", "-f", "4", "-o", model.parent, "--force", mention="contains the source")
    assert snapshot(model) == before


def test_an_output_inside_the_source_is_refused(model):
    refused("extend", model, "-m", "yarn", "-f", "4", "-o", model / "sub", "--force", mention="inside the source")


def test_force_does_not_replace_a_regular_file(model, tmp_path):
    target = tmp_path / "important.txt"
    target.write_text("keep me")
    refused("extend", model, "-m", "yarn", "-f", "4", "-o", target, "--force", mention="is a file")
    assert target.read_text() == "keep me"


def test_a_symlinked_output_is_refused_and_nothing_is_left(model, tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "keep").write_text("x")
    link = tmp_path / "lnk"
    link.symlink_to(real)
    refused("extend", model, "-m", "yarn", "-f", "4", "-o", link, "--force", mention="symbolic link")
    assert link.is_symlink() and (real / "keep").read_text() == "x" and debris(tmp_path) == []


def test_missing_parents_of_the_output_are_created(model, tmp_path):
    out = tmp_path / "out" / "models" / "x"
    rc, _, err = cli("extend", model, "-m", "yarn", "-f", "4", "-o", out)
    assert rc == 0, err
    assert json.loads((out / "config.json").read_text())["rope_scaling"]["factor"] == 4.0


def test_leftovers_of_a_killed_run_are_removed_by_the_next_run(model, tmp_path):
    out = tmp_path / "out"
    stale_tmp = tmp_path / ".out.ropeconv-tmp-abc123"
    stale_old = tmp_path / ".out.ropeconv-old-deadbeef"
    for stale in (stale_tmp, stale_old):
        stale.mkdir()
        (stale / "model.safetensors").write_bytes(b"partial")
    rc, _, err = cli("extend", model, "-m", "yarn", "-f", "4", "-o", out)
    assert rc == 0, err
    assert debris(tmp_path) == []


def test_cache_markers_and_a_stale_probe_are_not_carried(model, tmp_path):
    (model / ".ropeconv-complete").write_text("")
    (model / "probe.json").write_text("{}")
    rc, _, err = cli("extend", model, "-m", "yarn", "-f", "4", "-o", tmp_path / "out")
    assert rc == 0, err
    assert not (tmp_path / "out" / ".ropeconv-complete").exists()
    assert not (tmp_path / "out" / "probe.json").exists()


# -- high: links out of the model folder ----------------------------------------------------------------

@pytest.mark.parametrize("name", ["notes.txt", "tokenizer.json", "sub/inner.txt"])
def test_a_link_out_of_the_model_folder_is_refused(model, tmp_path, name):
    secret = tmp_path / "secret"
    secret.write_bytes(SENTINEL)
    (model / name).parent.mkdir(exist_ok=True)
    (model / name).symlink_to(secret)
    extend_refused(model, mention="outside the model folder")


def test_a_linked_config_or_index_out_of_the_folder_is_refused(model, tmp_path):
    outside = tmp_path / "elsewhere.json"
    outside.write_text(json.dumps(CONFIG))
    (model / "config.json").unlink()
    (model / "config.json").symlink_to(outside)
    refused("inspect", model, mention="outside the model folder")


def test_a_link_inside_the_model_folder_is_fine(model, tmp_path):
    (model / "copy.json").symlink_to("tokenizer_config.json")
    rc, _, err = cli("extend", model, "-m", "yarn", "-f", "4", "-o", tmp_path / "out")
    assert rc == 0, err
    assert (tmp_path / "out" / "copy.json").read_text() == (model / "tokenizer_config.json").read_text()


def test_a_hugging_face_cache_snapshot_works(tmp_path):
    """The layout `hf download` leaves: snapshots/<rev>/file -> ../../blobs/<hash>."""
    plain = write_model(tmp_path / "plain", shards=2)
    repo = tmp_path / "hub" / "models--org--name"
    snap = repo / "snapshots" / "0123abcd"
    (repo / "blobs").mkdir(parents=True)
    snap.mkdir(parents=True)
    for i, path in enumerate(sorted(plain.iterdir())):
        blob = repo / "blobs" / f"{i:040x}"
        blob.write_bytes(path.read_bytes())
        (snap / path.name).symlink_to(Path("../../blobs") / blob.name)
    before = snapshot(repo)
    out = tmp_path / "out"
    rc, _, err = cli("extend", snap, "-m", "yarn", "-f", "4", "-o", out)
    assert rc == 0, err
    assert snapshot(repo) == before
    assert all(not p.is_symlink() for p in out.iterdir())
    # a file in a snapshot linking anywhere else than the repo's blobs is still refused
    (snap / "notes.txt").symlink_to(tmp_path / "plain" / "config.json")
    refused("extend", snap, "-m", "yarn", "-f", "4", "-o", tmp_path / "out2", mention="outside the model folder")


# -- medium: headers, indexes and config values ------------------------------------------------------------

def test_unknown_rope_type_with_a_factor_counts_as_scaled(model, tmp_path):
    with_config(model, rope_scaling={"rope_type": "su-magic", "factor": 4.0})
    extend_refused(model, mention="--rebase")
    rc, _, err = cli("extend", model, "-m", "yarn", "-f", "4", "-o", tmp_path / "rebased", "--rebase")
    assert rc == 0, err


def test_a_header_shape_larger_than_its_data_is_refused_without_allocating(tmp_path):
    src = write_model(tmp_path / "m")
    fake = {"dtype": "F32", "shape": [4_000_000, 16], "data_offsets": [0, 64]}
    header = json.dumps({"model.rotary_emb.cos_cached": fake}).encode()
    (src / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + bytes(64))
    extend_refused(src, mention="claims shape")


@pytest.mark.parametrize("bad", [
    {"shape": [4], "data_offsets": [0, 16]},                               # no dtype
    {"dtype": "F32", "shape": [4], "data_offsets": [0.0, 16.0]},           # float offsets
    {"dtype": "F32", "shape": [True], "data_offsets": [0, 4]},             # a boolean dimension
    {"dtype": "Q9", "shape": [4], "data_offsets": [0, 16]},                # unknown dtype
    {"dtype": "F32", "shape": [4], "data_offsets": [16, 0]},               # reversed
    "not an object",
])
def test_malformed_header_entries_are_refused(tmp_path, bad):
    src = write_model(tmp_path / "m")
    header = json.dumps({"model.rotary_emb.inv_freq": bad}).encode()
    (src / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + bytes(16))
    extend_refused(src, mention="not a valid safetensors file")


def test_a_cos_cache_of_integers_is_refused(tmp_path):
    src = write_model(tmp_path / "m", extra_tensors={"model.rotary_emb.cos_cached": ("I8", [4, 8], bytes(32))})
    extend_refused(src, mention="not a float type")


def test_a_tensor_name_with_a_nul_byte_is_refused(tmp_path):
    src = write_model(tmp_path / "m", extra_tensors={"bad\u0000name": ("F32", [1], bytes(4))})
    extend_refused(src, mention="control characters")


@pytest.mark.parametrize("weight_map", [
    {"a": 1}, {"a": ["model.safetensors"]}, {"a": None}, {"a": "../model.safetensors"},
    {"a": "/etc/passwd"}, {"a": "model\u0000.safetensors"}, "not a map",
])
def test_bad_index_values_are_refused(tmp_path, weight_map):
    src = write_model(tmp_path / "m", shards=2)
    (src / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    extend_refused(src)


DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize("where", ["config.json", "model.safetensors.index.json", "header"])
def test_absurd_nesting_is_refused(tmp_path, where):
    src = write_model(tmp_path / "m", shards=2 if where != "header" else 1)
    if where == "header":
        blob = ('{"x":' + DEEP + "}").encode()
        (src / "model.safetensors").write_bytes(struct.pack("<Q", len(blob)) + blob)
    else:
        (src / where).write_text('{"weight_map": ' + DEEP + "}")
    extend_refused(src)


@pytest.mark.parametrize("changes", [
    {"rope_theta": int("9" * 400)},
    {"max_position_embeddings": int("9" * 400)},
    {"rope_theta": float("inf")},
    {"max_position_embeddings": 2**40},
    {"model_type": ["llama"]},
    {"model_type": {"x": 1}},
    {"layer_types": [{"type": "full_attention"}]},
    {"rope_scaling": {"rope_type": "linear", "factor": "abc"}},
    {"rope_scaling": {"rope_type": "linear", "factor": 0}},
    {"rope_scaling": {"rope_type": "linear", "factor": 1e308}},
    {"rope_theta": "10000"},
    {"num_attention_heads": True},
    {"rope_scaling": {"rope_type": "llama3"}},   # found by the property suite: a KeyError before
    {"head_dim": 2},                            # found by the property suite: NTK divided by zero
    {"head_dim": 2**31},                        # found by the property suite: 2**30 frequencies allocated
])
def test_absurd_config_values_are_refused(model, changes):
    with_config(model, **changes)
    extend_refused(model, "--rebase", mention="config.json")


def test_a_gemma3_factor_of_zero_is_refused(tmp_path):
    cfg = {"model_type": "gemma3_text", "hidden_size": 64, "num_attention_heads": 4, "head_dim": 16,
           "num_hidden_layers": 2, "max_position_embeddings": 4096,
           "rope_parameters": {"full_attention": {"rope_type": "linear", "factor": 0, "rope_theta": 1e6},
                               "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}}}
    src = with_config(write_model(tmp_path / "m"), **cfg)
    extend_refused(src, "--rebase", mention="factor")


def test_a_fake_bin_shard_is_one_line(tmp_path):
    src = write_model(tmp_path / "m")
    (src / "model.safetensors").unlink()
    import zipfile

    with zipfile.ZipFile(src / "pytorch_model.bin", "w") as archive:  # names a buffer but is no torch file
        archive.writestr("archive/data.pkl", b"\x80\x02crotary_emb.inv_freq\nq\x00.")
    extend_refused(src)


# -- numbers on the command line -----------------------------------------------------------------------

@pytest.mark.parametrize("value", ["0", "-4096", "abc", "1e30", "9" * 400, "nan", "inf"])
def test_absurd_original_context_is_one_line(model, value):
    extend_refused(model, "--original-context", value)


@pytest.mark.parametrize("option", ["--facotr", "--beta-fast fast", "--original-context abc", "--buffers"])
def test_typer_usage_errors_are_one_line(model, option):
    name, *rest = option.split()
    line = refused("extend", model, "-m", "yarn", "-f", "4", name, *rest)
    assert name in line


def test_usage_error_with_json_is_a_json_document(model):
    rc, out, err = cli("extend", model, "-m", "yarn", "--facotr", "4", "--json")
    assert rc == 2 and json.loads(out)["exit_code"] == 2
    one_error_line(err)


def test_a_newline_in_a_path_cannot_forge_a_second_line(tmp_path):
    line = refused("inspect", str(tmp_path / "x\nerror: forged"))
    assert "\\n" in line


def test_a_mistyped_local_path_is_reported_before_any_network_call(tmp_path, monkeypatch):
    (tmp_path / "models").mkdir()
    monkeypatch.chdir(tmp_path)
    env = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "0"}  # a Hub call would fail with exit 3
    refused("inspect", "models/SmolLM2", mention="does not exist", env=env)
    refused("inspect", "./SmolLM2", mention="does not exist", env=env)


# -- GGUF ---------------------------------------------------------------------------------------------------

gguf = pytest.importorskip("gguf")


def small_gguf(path: Path, *, theta=10000.0, head_count=4, kv=None) -> Path:
    from model_files import write_gguf_file

    T = gguf.GGUFValueType
    return write_gguf_file(path, "llama", {
        "llama.context_length": (T.UINT32, 4096), "llama.embedding_length": (T.UINT32, 64),
        "llama.attention.head_count": (T.STRING, head_count) if isinstance(head_count, str) else (T.UINT32, head_count),
        "llama.rope.freq_base": (T.FLOAT32, theta), "llama.rope.dimension_count": (T.UINT32, 16), **(kv or {})})


@pytest.mark.parametrize("kwargs", [{"theta": math.inf}, {"theta": math.nan}, {"head_count": "four"}])
def test_gguf_absurd_metadata_is_refused(tmp_path, kwargs):
    src = small_gguf(tmp_path / "m.gguf", **kwargs)
    before = src.read_bytes()
    refused("extend", src, "-m", "yarn", "-f", "4", "-o", tmp_path / "o.gguf")
    assert src.read_bytes() == before and not (tmp_path / "o.gguf").exists()
    refused("inspect", src)


def test_gguf_absurd_original_context_is_refused(tmp_path):
    src = small_gguf(tmp_path / "m.gguf")
    refused("extend", src, "-m", "yarn", "-f", "4", "--original-context", "5000000000", "-o", tmp_path / "o.gguf")
    assert [p.name for p in tmp_path.iterdir()] == ["m.gguf"]


# -- the Hub ------------------------------------------------------------------------------------------------

def test_the_token_is_scrubbed_from_read_errors_whatever_its_shape(monkeypatch):
    from ropeconv.hub.client import HubSettings, hub_error

    token = "my-org-secret-token-1234"
    monkeypatch.setenv("HF_TOKEN", token)
    cfg = HubSettings("http://hub.invalid", "/tmp/cache", False)
    error = hub_error(RuntimeError(f"request with Authorization: Bearer {token} failed"), cfg=cfg, repo_id="a/b")
    assert token not in error.line() and "***" in error.line()


# -- the promise on --debug ----------------------------------------------------------------------------------

def test_debug_shows_the_traceback(model):
    with_config(model, rope_theta=float("nan"))
    rc, _, err = cli("inspect", model, "--debug")
    assert rc == 2 and "Traceback" in err


def test_source_is_never_opened_for_writing(model, tmp_path):
    os.chmod(model, 0o555)  # a read-only source folder still converts
    try:
        rc, _, err = cli("extend", model, "-m", "yarn", "-f", "4", "-o", tmp_path / "out", "--copy")
    finally:
        os.chmod(model, 0o755)
    assert rc == 0, err


# -- cases whose fix lives in the request/recipe/batch layer ------------------------------------------------

@pytest.mark.parametrize("args, mention", [
    (["-f", "1e308"], "factor"),
    (["-m", "ntk", "-f", "1e300"], "factor"),
    (["-f", "1e300"], "factor"),
])
def test_absurd_factors_are_one_line(model, args, mention):
    out = model.parent / "out"
    refused("extend", model, "-m", "yarn", *args, "-o", out, mention=mention)
    assert not out.exists()


def test_a_factor_adding_no_whole_token_suggests_a_value_that_is_accepted(model, tmp_path):
    line = refused("extend", model, "-m", "yarn", "-f", "1.0000001", "-o", tmp_path / "out")
    assert "whole number of tokens" not in line or "1.0000001" not in line.split("—")[1]


def test_original_context_zero_does_not_blame_config_json(model, tmp_path):
    line = refused("extend", model, "-m", "yarn", "-f", "4", "--original-context", "0", "-o", tmp_path / "out")
    assert "config.json" not in line and "--original-context" in line


def recipe(tmp_path: Path, model: Path, extra: str) -> Path:
    folder = tmp_path / "recipes"
    folder.mkdir(exist_ok=True)
    (folder / "r.toml").write_text(f'[[conversion]]\nname = "r1"\nsource = "{model}"\nmethod = "yarn"\n{extra}\n')
    return folder


@pytest.mark.parametrize("extra", ["factor = 1e308", "factor = 2\noriginal_context = 1e30",
                                   "factor = 2\noriginal_context = 1e308"])
def test_absurd_recipe_numbers_are_refused_with_a_fix(model, tmp_path, extra):
    folder = recipe(tmp_path, model, extra)
    refused("batch", folder, "--output-dir", tmp_path / "built", "--state", tmp_path / "s.json")
    assert not (tmp_path / "built" / "r1").exists()


def test_a_deeply_nested_recipe_is_one_line(model, tmp_path):
    folder = recipe(tmp_path, model, "factor = 2\nx = " + "[" * 100_000 + "]" * 100_000)
    refused("batch", folder, "--output-dir", tmp_path / "built", "--state", tmp_path / "s.json")


def test_batch_never_forces_over_a_folder_that_contains_the_source(tmp_path):
    """batch forces over its own earlier outputs (a folder holding ropeconv.json): never over one that holds
    the source, whatever it holds."""
    out_dir = tmp_path / "built"
    model = write_model(out_dir / "r1" / "base")
    (out_dir / "r1" / "ropeconv.json").write_text("{}")
    before = snapshot(model)
    folder = recipe(tmp_path, model, "factor = 2")
    rc, _, err = cli("batch", folder, "--output-dir", out_dir, "--state", tmp_path / "s.json")
    assert rc == 2, err
    assert snapshot(model) == before


def test_gguf_leftovers_of_a_killed_run_are_removed(tmp_path):
    src = small_gguf(tmp_path / "m.gguf")
    stale = tmp_path / ".o.gguf.k1ll3d.ropeconv-tmp"
    stale.write_bytes(b"partial")
    rc, _, err = cli("extend", src, "-m", "yarn", "-f", "4", "-o", tmp_path / "sub" / "o.gguf")
    assert rc == 0, err  # missing parents are created for a GGUF output too
    rc, _, err = cli("extend", src, "-m", "yarn", "-f", "4", "-o", tmp_path / "o.gguf")
    assert rc == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.gguf", "o.gguf", "sub"]


def test_a_symlinked_gguf_output_is_refused(tmp_path):
    src = small_gguf(tmp_path / "m.gguf")
    (tmp_path / "target.gguf").write_bytes(b"keep")
    (tmp_path / "o.gguf").symlink_to(tmp_path / "target.gguf")
    refused("extend", src, "-m", "yarn", "-f", "4", "-o", tmp_path / "o.gguf", "--force", mention="symbolic link")
    assert (tmp_path / "target.gguf").read_bytes() == b"keep"


def test_push_never_uploads_a_link_out_of_the_folder(model, tmp_path):
    from ropeconv.errors import RopeconvError
    from ropeconv.hub.push import _local_files

    secret = tmp_path / "token"
    secret.write_bytes(SENTINEL)
    (model / "notes.txt").symlink_to(secret)
    with pytest.raises(RopeconvError, match="outside the model folder"):
        _local_files(model)


@pytest.mark.parametrize("content", ["[" * 100_000 + "]" * 100_000, "[" + ",".join(["1e400"] * 8) + "]",
                                     '{"a": 1}', "not json"])
def test_hostile_longrope_factor_files_are_one_line(model, tmp_path, content):
    factors = tmp_path / "factors.json"
    factors.write_text(content)
    extend_refused(model, "-m", "longrope", "--short-factor", factors, "--long-factor", factors)
