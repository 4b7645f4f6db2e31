"""`ropeconv probe FILE.gguf` without llama.cpp running: the engine chosen from the file type, the inputs
refused before any progress line (extra missing or broken, mixed --against, --device/--dtype), and the
RoPE arguments parsed from a captured llama.cpp load log. The measurements themselves (they need the
`llamacpp` extra) are in tests/test_llamacpp.py.

Stub: where a test needs llama-cpp-python to be absent, `sys.modules["llama_cpp"] = None` blocks its
import (what Python does for a module that is not installed); nothing else is stubbed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ropeconv.cli import app
from ropeconv.errors import EXIT_BAD_INPUT, RopeconvError
from ropeconv.probe import llamacpp
from ropeconv.probe.backend import (LLAMA_CPP, TRANSFORMERS, LlamaCppBackend, TransformersBackend, check_same_kind,
                                    describe_gguf, is_gguf, pick_backend, result_path)

runner = CliRunner()


def cli(*args):
    return runner.invoke(app, ["probe", *map(str, args)])


def one_error_line(result) -> str:
    """The whole output of a refused probe: exactly one line, the error (no progress line before it)."""
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error:"), result.output
    return lines[0]


@pytest.fixture(scope="module")
def smol_gguf() -> Path:
    from ropeconv.smollm import gguf_path

    try:
        return gguf_path()
    except RopeconvError as exc:
        pytest.skip(str(exc))


@pytest.fixture
def no_llama_cpp(monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)


# ---- a captured llama.cpp load log (llama-cpp-python 0.3.36, SmolLM2 extended yarn x4 by ropeconv) --------

YARN_LOAD_LOG = """\
llama_model_loader: loaded meta data with 41 key-value pairs and 272 tensors from /tmp/smol-yarn-x4.gguf (version GGUF V3 (latest))
llama_model_loader: - kv  15:                       llama.rope.freq_base f32              = 100000.000000
llama_model_loader: - kv  34:                    llama.rope.scaling.type str              = yarn
print_info: arch                  = llama
print_info: n_ctx_train           = 32768
print_info: rope type             = 0
print_info: rope scaling          = yarn
print_info: freq_base_train       = 100000.0
print_info: freq_scale_train      = 0.25
print_info: n_ctx_orig_yarn       = 8192
print_info: rope_yarn_log_mul     = 0.0000
print_info: rope_finetuned        = unknown
print_info: model params          = 134.52 M
llama_context: constructing llama_context
llama_context: n_ctx                 = 2048
llama_context: n_ctx_seq             = 2048
llama_context: freq_base             = 100000.0
llama_context: freq_scale            = 0.25
llama_context: n_ctx_seq (2048) < n_ctx_train (32768) -- the full capacity of the model will not be utilized
"""


def test_the_rope_arguments_are_read_from_llama_cpps_load_log():
    rope = llamacpp.parse_rope_log(YARN_LOAD_LOG)
    assert (rope.scaling, rope.freq_base_train, rope.freq_scale_train, rope.n_ctx_train, rope.n_ctx_orig_yarn) == \
        ("yarn", 100000.0, 0.25, 32768, 8192)
    assert (rope.n_ctx, rope.freq_base, rope.freq_scale, rope.n_tensors) == (2048, 100000.0, 0.25, 272)
    assert rope.to_dict()["ext_factor"] == 1.0  # llama.cpp's default for yarn when the caller sets none
    plain = llamacpp.parse_rope_log(YARN_LOAD_LOG.replace("= yarn", "= linear").replace("= 0.25", "= 1"))
    assert (plain.scaling, plain.freq_scale, plain.to_dict()["ext_factor"]) == ("linear", 1.0, 0.0)


def test_a_log_without_the_lines_leaves_the_arguments_unknown():
    rope = llamacpp.parse_rope_log("llama_model_loader: - kv 0: print_info: rope scaling = yarn\nnoise = 3\n")
    assert rope == llamacpp.RopeArgs(*([None] * 9))
    # a value that is not a number is skipped, not a crash
    assert llamacpp.parse_rope_log("llama_context: freq_scale = nan-ish\n").freq_scale is None


def test_the_rope_line_on_screen_names_each_model():
    from ropeconv.cli.probe_render import llama_cpp_line

    rope = llamacpp.parse_rope_log(YARN_LOAD_LOG).to_dict()
    base = llamacpp.parse_rope_log(YARN_LOAD_LOG.replace("= yarn", "= linear").replace("= 0.25", "= 1")).to_dict()
    line = llama_cpp_line({"build": "llama-cpp-python 0.3.36", "rope": {"model": rope, "against": base}}, True)
    assert "\n" not in line
    assert "after: scaling yarn, freq_base 100000, freq_scale 0.25, n_ctx_orig_yarn 8192, ext_factor 1" in line
    assert "before: scaling linear, freq_base 100000, freq_scale 1" in line and "0.3.36" in line


# ---- the engine, from the file type -----------------------------------------------------------------------

def test_the_engine_follows_the_file_type(smol_gguf, tmp_path):
    assert is_gguf(smol_gguf) and not is_gguf(tmp_path) and not is_gguf(tmp_path / "missing.gguf")
    backend, choice = pick_backend(False, "cpu", "float32", n_ctx=4096)
    assert isinstance(backend, TransformersBackend) and backend.name == TRANSFORMERS and choice.dtype == "float32"
    assert result_path({"path": smol_gguf}, "probe.json").name == smol_gguf.name + ".probe.json"
    assert result_path({"path": tmp_path}, "probe.json") == tmp_path / "probe.json"


def test_a_gguf_runs_in_llama_cpp():
    pytest.importorskip("llama_cpp")
    backend, choice = pick_backend(True, "auto", "auto", n_ctx=4096)
    assert isinstance(backend, LlamaCppBackend) and backend.name == LLAMA_CPP and backend.n_ctx == 4096
    assert choice.dtype == "gguf"


def test_a_gguf_is_described_from_its_own_metadata(smol_gguf):
    described = describe_gguf(smol_gguf, None)
    assert described["original_context"] == 8192 and described["served_context"] == 8192
    assert described["record"]["rope_type"] == "default" and described["record"]["kind"] == "gguf"
    assert described["is_ropeconv_output"] is False  # the packaged file carries no ropeconv.* keys


def test_a_ropeconv_gguf_keeps_its_L0_and_is_a_ropeconv_output(smol_gguf, tmp_path):
    from ropeconv import api

    out = tmp_path / "smol-ntk-x4.gguf"
    api.extend(str(smol_gguf), "ntk", factor=4, output=str(out))
    described = describe_gguf(out, None)
    # NTK leaves no original_context key: L0 comes from the ropeconv record, not context_length (32768)
    assert described["original_context"] == 8192 and described["served_context"] == 32768
    assert described["is_ropeconv_output"] is True


# ---- refused before any progress line ---------------------------------------------------------------------

def test_without_the_extra_a_gguf_probe_says_how_to_install_it(smol_gguf, no_llama_cpp):
    assert not llamacpp.available()
    result = cli(smol_gguf, "--lengths", "1k")
    assert result.exit_code == EXIT_BAD_INPUT
    line = one_error_line(result)
    assert "llama-cpp-python is not installed" in line and 'pip install "ropeconv[llamacpp]"' in line
    assert "compiles llama.cpp" in line


def test_a_gguf_against_a_folder_is_one_line(smol_gguf, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    for args in ((smol_gguf, "--against", folder), (folder, "--against", smol_gguf)):
        result = cli(*args, "--lengths", "1k")
        assert result.exit_code == EXIT_BAD_INPUT
        assert "one engine" in one_error_line(result)
    with pytest.raises(RopeconvError, match="MODEL is a GGUF file and BASE a Hugging Face model"):
        check_same_kind(True, False)
    check_same_kind(True, True)
    check_same_kind(False, None)


@pytest.mark.parametrize("option, value", [("--device", "cuda"), ("--dtype", "float16")])
def test_device_and_dtype_are_for_hugging_face_models(smol_gguf, option, value):
    result = cli(smol_gguf, option, value, "--lengths", "1k")
    assert result.exit_code == EXIT_BAD_INPUT
    assert f"{option} {value} applies to Hugging Face models" in one_error_line(result)


def test_an_install_that_cannot_import_is_one_line(smol_gguf, monkeypatch):
    """Stub: llama_cpp's dependency diskcache blocked in sys.modules (what `pip install --no-deps` leaves)."""
    if not llamacpp.available():
        pytest.skip("llama-cpp-python is not installed")
    for name in [m for m in sys.modules if m == "llama_cpp" or m.startswith("llama_cpp.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "diskcache", None)
    result = cli(smol_gguf, "--lengths", "1k")
    assert result.exit_code == EXIT_BAD_INPUT
    line = one_error_line(result)
    assert "llama-cpp-python is installed but cannot be imported" in line and "diskcache" in line


def test_llama_cpp_override_flags_become_its_context_arguments():
    argv = ["llama-server", "-m", "MODEL.gguf", "--rope-scaling", "yarn", "--rope-scale", "4", "--yarn-orig-ctx",
            "8192", "--rope-freq-base", "418000.5", "-c", "32768"]
    assert llamacpp.override_kwargs(argv) == {"rope_scaling_type": 2, "rope_freq_scale": 0.25, "yarn_orig_ctx": 8192,
                                              "rope_freq_base": 418000.5}
    assert llamacpp.override_kwargs(["llama-server", "-m", "x.gguf", "-c", "4096"]) == {}
    with pytest.raises(RopeconvError, match="--rope-scaling 'cubic' is not a value llama.cpp takes"):
        llamacpp.override_kwargs(["llama-server", "--rope-scaling", "cubic"])


def test_a_long_gguf_probe_is_not_told_to_use_a_gpu():
    from ropeconv.probe.progress import shorten_hint

    assert "--device cuda" in shorten_hint(95.0) and "--device cuda" in shorten_hint(None)
    assert "--device cuda" not in shorten_hint(95.0, gpu=False) and "--quick" in shorten_hint(95.0, gpu=False)
    assert shorten_hint(None, gpu=False) == "to shorten it: fewer tokens past L0 (--lengths)"
