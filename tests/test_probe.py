"""The probe's mechanics on tiny models built here: lengths, buckets, chunked loss, verdict, CLI."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import save_char_tokenizer
from ropeconv.cli import app
from ropeconv.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, RopeconvError
from ropeconv.probe import default_lengths, parse_length, parse_lengths
from ropeconv.probe import measure, passkey, text as texts
from ropeconv.probe.verdict import Thresholds, judge

VOCAB = 128
TRAINED = 64  # max_position_embeddings of the tiny models: their L0


# ---- tiny models with a character tokenizer --------------------------------------------------

def build_model(folder: Path, kind: str = "random") -> Path:
    """A 2-layer Llama (hidden 64) with a character tokenizer.

    kind="random": random weights. kind="copy": predicts "the next character repeats this one"
    with near certainty (attention and MLP outputs zeroed, LM head = scaled embeddings), so its
    loss is ≈ 0 on runs of one character and large elsewhere. kind="uniform": LM head zeroed, so
    every token costs exactly ln(vocab).
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=VOCAB, max_position_embeddings=TRAINED,
                         tie_word_embeddings=False, bos_token_id=None, eos_token_id=0, pad_token_id=0)
    model = LlamaForCausalLM(config).float()
    with torch.no_grad():
        if kind in ("copy", "uniform"):
            for layer in model.model.layers:
                layer.self_attn.o_proj.weight.zero_()
                layer.mlp.down_proj.weight.zero_()
            embed = torch.randn(VOCAB, 64)
            model.model.embed_tokens.weight.copy_(embed)
            model.lm_head.weight.copy_(embed * (0.5 if kind == "copy" else 0.0))
    model.save_pretrained(folder)
    save_char_tokenizer(folder)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe-models")
    return {kind: build_model(root / kind, kind) for kind in ("random", "copy", "uniform")}


def write_text(folder: Path, content: str) -> Path:
    path = folder / "text.txt"
    path.write_text(content, encoding="utf-8")
    return path


def noisy(count: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(count))


runner = CliRunner()


def cli(*args: str):
    return runner.invoke(app, ["probe", *map(str, args)])


# ---- lengths ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text, value", [("4k", 4096), ("16K", 16384), ("32768", 32768), ("1.5k", 1536),
                                         (" 2k ", 2048), ("1m", 1048576)])
def test_lengths_parse(text, value):
    assert parse_length(text) == value


@pytest.mark.parametrize("text", ["abc", "4x", "-1", "0", "8", "1.3", "4kk", "", "k"])
def test_bad_lengths_are_refused(text):
    with pytest.raises(RopeconvError, match="not a length"):
        parse_length(text)


def test_lengths_list_is_sorted_and_unique():
    assert parse_lengths("16k,4k,4096,32768") == [4096, 16384, 32768]
    with pytest.raises(RopeconvError):
        parse_lengths(" , ")


def test_default_lengths():
    assert default_lengths(8192, 32768) == [4096, 16384, 32768]
    assert default_lengths(8192, 8192) == [4096, 16384]  # unscaled: probe past its window
    assert default_lengths(8192, 32768, quick=True) == [4096, 12288]
    assert default_lengths(2048, 8192) == [2048, 4096, 8192]


# ---- buckets and summaries -------------------------------------------------------------------

@pytest.mark.parametrize("positions, trained, count", [(16383, 8192, 8), (10239, 8192, 8), (32767, 8192, 8),
                                                       (4095, 8192, 8), (199, 64, 8), (70, 64, 8), (5, 64, 8)])
def test_buckets_cover_positions_and_split_at_L0(positions, trained, count):
    edges = measure.bucket_edges(positions, trained, count)
    assert edges[0][0] == 0 and edges[-1][1] == positions
    assert all(a[1] == b[0] for a, b in zip(edges, edges[1:]))
    assert len(edges) == min(count, positions)
    if positions > trained:
        assert trained in [start for start, _ in edges]  # no bucket straddles L0
        widths = [end - start for start, end in edges]
        assert max(widths) <= 2 * min(widths) + 1 or positions - trained < positions // count


def test_buckets_at_16k_match_the_reference_protocol():
    assert measure.bucket_edges(16383, 8192, 8)[:5] == [(0, 2048), (2048, 4096), (4096, 6144), (6144, 8192),
                                                        (8192, 10239)]


def test_summary_averages_per_token():
    losses = [1.0] * 64 + [3.0] * 64  # inside L0 (64 positions) then beyond
    s = measure.summarize(losses, trained=64, buckets=4)
    assert s["positions"] == 128
    assert s["ppl_inside"] == pytest.approx(math.e)
    assert s["ppl_beyond"] == pytest.approx(math.e ** 3)
    assert s["ppl"] == pytest.approx(math.e ** 2)
    assert s["ppl_last_quarter"] == pytest.approx(math.e ** 3)
    assert [b["region"] for b in s["buckets"]] == ["inside", "inside", "beyond", "beyond"]
    assert [b["tokens"] for b in s["buckets"]] == [32, 32, 32, 32]
    assert s["buckets"][-1]["ppl"] == pytest.approx(math.e ** 3)
    short = measure.summarize([2.0] * 10, trained=64)
    assert short["ppl_beyond"] is None and short["ppl_inside"] == pytest.approx(math.e ** 2)


# ---- the chunked loss ------------------------------------------------------------------------

def test_chunked_loss_equals_the_plain_forward(models):
    import torch

    model = measure.load_model(models["random"], "cpu", torch.float32)
    ids = torch.randint(0, VOCAB, (300,), generator=torch.Generator().manual_seed(1)).tolist()
    with torch.inference_mode():
        plain = model(torch.tensor([ids]), labels=torch.tensor([ids])).loss.item()
        logits = model(torch.tensor([ids])).logits[0].float()
        per_token = torch.nn.functional.cross_entropy(logits[:-1], torch.tensor(ids[1:]), reduction="none")
    for chunk in (7, 64, 1024):
        losses = measure.token_losses(model, ids, chunk=chunk)
        assert losses.shape == (299,) and losses.dtype == torch.float32
        assert losses.mean().item() == pytest.approx(plain, abs=1e-5)
        assert torch.allclose(losses, per_token, atol=1e-5)


def test_progress_steps_are_counted(models):
    import torch

    model = measure.load_model(models["random"], "cpu", torch.float32)
    calls = []
    measure.token_losses(model, list(range(100)), chunk=30, advance=calls.append)
    assert len(calls) == measure.steps_for(model, 100, chunk=30) == 2 + 4


# ---- verdict logic ---------------------------------------------------------------------------

def summary(inside: float, beyond: float | None = None, trained: int = 64, length: int = 128) -> dict:
    n_beyond = length - 1 - trained
    losses = [math.log(inside)] * min(length - 1, trained) + ([math.log(beyond)] * n_beyond if beyond else [])
    return measure.summarize(losses, trained)


def test_verdict_passes_a_level_extension_and_fails_a_climb():
    level = judge([{"length": 128, "model": summary(7.0, 7.5)}], 64, Thresholds())
    assert level["status"] == "pass" and level["passed"]
    climb = judge([{"length": 128, "model": summary(7.0, 443.0)}], 64, Thresholds())
    assert climb["status"] == "fail" and not climb["passed"]
    assert climb["checks"][0]["name"] == "past_trained_context"
    assert climb["checks"][0]["value"] == pytest.approx(443 / 7)
    assert "443" in climb["summary"]
    edge = judge([{"length": 128, "model": summary(10.0, 19.9)}], 64, Thresholds())
    assert edge["status"] == "pass"  # just under the limit (×2)
    assert judge([{"length": 128, "model": summary(10.0, 20.2)}], 64, Thresholds())["status"] == "fail"
    assert judge([{"length": 128, "model": summary(10.0, 16.0)}], 64, Thresholds(max_beyond_ratio=1.5))["status"] == "fail"


def test_verdict_against_base_catches_a_model_worse_everywhere():
    # Untuned linear ×4 on SmolLM2: level (≈ 50 inside, ≈ 60 past L0) but far above BASE's ≈ 4.
    linear, base = summary(50.0, 60.0), summary(4.0, 400.0)
    alone = judge([{"length": 128, "model": linear}], 64, Thresholds())
    assert alone["status"] == "pass"  # level: the model's own reference cannot see it
    paired = judge([{"length": 128, "model": linear, "against": base}], 64, Thresholds())
    assert paired["status"] == "fail"
    names = {c["name"]: c for c in paired["checks"]}
    assert names["past_trained_context"]["passed"]
    assert not names["past_trained_context_vs_base"]["passed"]
    assert names["past_trained_context_vs_base"]["value"] == pytest.approx(15.0)
    good = judge([{"length": 128, "model": summary(4.4, 6.2), "against": base}], 64, Thresholds())
    assert good["status"] == "pass" and len(good["checks"]) == 2


def test_verdict_short_context_needs_a_base():
    runs = [{"length": 60, "model": summary(9.0, length=60), "against": summary(7.0, length=60)}]
    assert judge(runs, 64, Thresholds())["status"] == "fail"  # ×1.29 > ×1.25
    assert judge(runs, 64, Thresholds(max_short_ratio=1.3))["status"] == "pass"
    alone = [{"length": 60, "model": summary(9.0, length=60)}]
    result = judge(alone, 64, Thresholds())
    assert result["status"] == "inconclusive" and result["passed"] and not result["checks"]


def test_verdict_passkey_is_judged_only_on_request():
    runs = [{"length": 128, "model": summary(7.0, 7.0)}]
    key = {"accuracy": 0.5}
    assert judge(runs, 64, Thresholds(), key)["status"] == "pass"
    assert judge(runs, 64, Thresholds(min_passkey_accuracy=0.8), key)["status"] == "fail"


def test_thresholds_are_validated():
    assert Thresholds.from_options(1.1, None, None) == Thresholds(1.1, 2.0, None)
    for bad in ((0.5, None, None), (None, float("nan"), None), (None, None, 2.0)):
        with pytest.raises(RopeconvError):
            Thresholds.from_options(*bad)


# ---- the CLI end to end ----------------------------------------------------------------------

def test_probe_passes_a_model_that_stays_level(models, tmp_path):
    text = write_text(tmp_path, "a" * 400)
    result = cli(models["copy"], "--lengths", "48,128", "--text", text, "--device", "cpu", "--json")
    assert result.exit_code == EXIT_OK, result.output
    report = json.loads(result.stdout)
    assert report["verdict"]["status"] == "pass"
    assert report["lengths"] == [48, 128] and report["trained_context"] == TRAINED
    run = report["results"][1]
    assert run["length"] == 128 and run["model"]["positions"] == 127
    assert run["model"]["ppl"] == pytest.approx(1.0, abs=1e-3)
    assert len(run["model"]["buckets"]) == 8
    assert report["text"]["source"] == "file" and len(report["text"]["sha256"]) == 64
    assert report["against"] is None and report["device"] == "cpu"
    assert set(report["method"]) >= {"protocol", "loss", "average", "positions", "buckets"}
    assert report["thresholds"] == Thresholds().to_dict()


def test_probe_fails_a_model_that_climbs_past_L0(models, tmp_path):
    # Runs of one character up to L0, noise after it: the copy model is perfect inside, lost past it.
    text = write_text(tmp_path, "a" * (TRAINED + 1) + noisy(300))
    result = cli(models["copy"], "--lengths", "128", "--text", text, "--device", "cpu", "--json")
    assert result.exit_code == EXIT_FAILED, result.output
    report = json.loads(result.stdout)
    check = report["verdict"]["checks"][0]
    assert check["name"] == "past_trained_context" and not check["passed"] and check["value"] > 100
    human = cli(models["copy"], "--lengths", "128", "--text", text, "--device", "cpu")
    assert human.exit_code == EXIT_FAILED
    assert "verdict: fail" in human.output and "Perplexity" in human.output


def test_probe_against_compares_short_context(models, tmp_path):
    text = write_text(tmp_path, "a" * 400)
    same = cli(models["copy"], "--against", models["copy"], "--lengths", "48", "--text", text, "--json")
    assert same.exit_code == EXIT_OK, same.output
    report = json.loads(same.stdout)
    assert report["results"][0]["against"]["ppl"] == pytest.approx(report["results"][0]["model"]["ppl"])
    assert report["verdict"]["checks"][0]["name"] == "short_context"
    worse = cli(models["uniform"], "--against", models["copy"], "--lengths", "48", "--text", text, "--json")
    assert worse.exit_code == EXIT_FAILED, worse.output
    model_ppl = json.loads(worse.stdout)["results"][0]["model"]["ppl"]
    assert model_ppl == pytest.approx(VOCAB, rel=1e-4)  # a zeroed head: every token costs ln(vocab)


def test_probe_json_is_saved_in_a_ropeconv_output(models, tmp_path):
    from ropeconv import api

    out = tmp_path / "extended"
    api.extend(str(models["copy"]), "yarn", factor=2, output=out)
    text = write_text(tmp_path, "a" * 400)
    result = cli(out, "--quick", "--text", text, "--json")
    assert result.exit_code == EXIT_OK, result.output
    report = json.loads(result.stdout)
    assert report["lengths"] == [64, 96]  # --quick: L0 and L0 × 1.5
    assert report["model"]["rope_type"] == "yarn" and report["model"]["served_context"] == 128
    saved = json.loads((out / "probe.json").read_text())
    assert saved["verdict"] == report["verdict"] and saved["text"]["sha256"] == report["text"]["sha256"]
    assert report["saved"] == str(out / "probe.json")
    assert report["hint"].endswith(f"--against {models['copy']}")  # the source ropeconv.json records
    assert not list(out.glob(".*.tmp"))
    again = cli(out, "--quick", "--text", text, "--json", "--no-save")
    assert again.exit_code == EXIT_OK and "saved" not in json.loads(again.stdout)


def test_a_plain_folder_gets_no_probe_json(models, tmp_path):
    text = write_text(tmp_path, "a" * 400)
    assert cli(models["copy"], "--lengths", "48", "--text", text, "--json").exit_code == EXIT_OK
    assert not (models["copy"] / "probe.json").exists()


# ---- bad input: one line, exit 2, nothing half-done -------------------------------------------

def assert_one_line_error(result, *words):
    """Exit 2 and exactly one line: no progress line (`loading …`) before the error."""
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1 and result.output.startswith("error: "), result.output
    for word in words:
        assert word in result.output


def test_missing_text_file(models, tmp_path):
    assert_one_line_error(cli(models["copy"], "--lengths", "48", "--text", tmp_path / "nope.txt"),
                          "does not exist")


def test_text_too_short_says_how_many_tokens(models, tmp_path):
    text = write_text(tmp_path, "a" * 100)
    result = cli(models["copy"], "--lengths", "4k", "--text", text, "--json")
    assert result.exit_code == EXIT_BAD_INPUT
    error = json.loads(result.stdout)["error"]
    assert "100 tokens" in error and "4096" in error and "--lengths" in error


def test_garbage_lengths(models):
    assert_one_line_error(cli(models["copy"], "--lengths", "4k,lots"), "'lots'", "4k")


def test_model_that_does_not_load(tmp_path, models):
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (broken / name).write_bytes((models["copy"] / name).read_bytes())  # no weights
    text = write_text(tmp_path, "a" * 100)
    assert_one_line_error(cli(broken, "--lengths", "48", "--text", text), "has no weights")
    (broken / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")  # no tensors
    # transformers would fill every tensor with random values, and the probe would judge noise
    assert_one_line_error(cli(broken, "--lengths", "48", "--text", text), "lack", "tensors")
    (broken / "model.safetensors").write_bytes(b"\xff" * 64)  # not safetensors at all
    assert_one_line_error(cli(broken, "--lengths", "48", "--text", text), "cannot load")
    assert_one_line_error(cli(tmp_path / "missing"), "no local folder")


def test_bad_device_and_dataset_without_library(models, tmp_path):
    text = write_text(tmp_path, "a" * 100)
    assert_one_line_error(cli(models["copy"], "--lengths", "48", "--text", text, "--device", "tpu"), "--device")
    import importlib.util

    if importlib.util.find_spec("datasets") is None:  # the error that names the optional extra
        assert_one_line_error(cli(models["copy"], "--lengths", "48", "--dataset", "pg19"), "pip install datasets")
    assert_one_line_error(cli(models["copy"], "--lengths", "48", "--dataset", "a:b:c:d"), "NAME[:config[:split]]")


def test_out_of_memory_is_recognised():
    import torch

    assert measure.is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert measure.is_out_of_memory(RuntimeError("[enforce fail at alloc_cpu.cpp:114] DefaultCPUAllocator: "
                                                 "can't allocate memory: you tried to allocate 34359738368 bytes"))
    assert not measure.is_out_of_memory(RuntimeError("shape mismatch"))
    error = measure.out_of_memory_error("measuring 131072 tokens", "cpu")
    assert "lower lengths" in error.line() and "bigger device" in error.line()  # the library's names
    from ropeconv.recipes import recipe_words
    from ropeconv.request import cli_flag

    assert "lower --lengths" in error.worded(cli_flag).line()  # as `probe` says it
    assert "lower probe.lengths" in recipe_words(error) and "--" not in recipe_words(error)  # as a recipe does


def test_a_real_allocation_failure_becomes_a_one_line_error():
    import torch

    from ropeconv.probe import guarded

    def allocate_too_much():  # far beyond any machine's memory: torch refuses before touching RAM
        return torch.empty(1 << 62, dtype=torch.uint8)

    with pytest.raises(RopeconvError, match="out of memory while measuring"):
        guarded(allocate_too_much, "measuring 1 tokens", "cpu")


# ---- text and passkey ------------------------------------------------------------------------

def test_default_text_is_deterministic_and_long():
    first, second = texts.stdlib_text(), texts.stdlib_text()
    assert first.sha256 == second.sha256 and first.source == "python-stdlib"
    assert len(first.content) > 32768 * 6  # far more than 32k tokens of code
    assert first.details["modules"] == sorted(first.details["modules"])


def test_dataset_spec_parsing():
    assert texts.parse_dataset("pg19") == ("pg19", None, "test")
    assert texts.parse_dataset("wikitext:wikitext-2-raw-v1:validation") == ("wikitext", "wikitext-2-raw-v1",
                                                                             "validation")


def test_passkey_prompt_fits_and_hides_the_key(models):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(models["copy"])
    for depth in (0.0, 0.5, 1.0):
        key = passkey.passkey_for(2000, depth)
        ids = passkey.build_prompt(tok, 2000, depth, key)
        assert 1900 <= len(ids) <= 2000
        prompt = "".join(tok.convert_ids_to_tokens(ids))  # one character per token
        assert f"The pass key is {key}." in prompt and prompt.endswith("The pass key is")
        where = prompt.index(str(key)) / len(prompt)
        assert abs(where - depth) < 0.1
    assert passkey.first_integer(" 12345. Remember") == 12345 and passkey.first_integer("none") is None
    assert passkey.parse_depths("10%,0.5") == (0.1, 0.5)
    with pytest.raises(RopeconvError):
        passkey.parse_depths("1.5")


def test_passkey_runs_through_the_cli(models, tmp_path):
    text = write_text(tmp_path, "a" * 400)
    # A random tiny model cannot reproduce a multi-digit key: accuracy is exactly 0, and judged
    # against --min-passkey-accuracy 1 the verdict fails.
    result = cli(models["random"], "--lengths", "300", "--text", text, "--passkey", "--depths", "0.5",
                 "--min-passkey-accuracy", "1", "--json")
    report = json.loads(result.stdout)
    assert result.exit_code == EXIT_FAILED, result.output
    trial = report["passkey"]["per_length"][0]["trials"][0]
    assert trial["tokens"] <= 300 and trial["correct"] is False
    assert report["passkey"]["accuracy"] == 0.0
    assert any(c["name"].startswith("passkey") and not c["passed"] for c in report["verdict"]["checks"])


def test_cli_and_probe_modules_import_no_torch():
    import subprocess
    import sys

    code = ("import sys, ropeconv.cli, ropeconv.cli.probe, ropeconv.cli.probe_render, ropeconv.probe, "
            "ropeconv.probe.progress, ropeconv.probe.verdict, ropeconv.probe.text, ropeconv.probe.measure, ropeconv.probe.passkey, "
            "ropeconv.smollm; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# ---- dtype: the fastest faithful one for the device ------------------------------------------

CPUINFO_AVX2 = "processor\t: 0\nflags\t\t: fpu sse sse2 avx avx2 fma f16c\n\nprocessor\t: 1\nflags\t\t: fpu avx2\n"
CPUINFO_SAPPHIRE = "flags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
CPUINFO_NEOVERSE = "Features\t: fp asimd evtstrm aes sha2 crc32 atomics bf16 i8mm\n"


def test_cpu_flags_are_read_from_cpuinfo():
    assert measure.cpu_flags(CPUINFO_AVX2) == {"fpu", "sse", "sse2", "avx", "avx2", "fma", "f16c"}
    assert "bf16" in measure.cpu_flags(CPUINFO_NEOVERSE)
    assert measure.cpu_flags("") is None


@pytest.mark.parametrize("cpuinfo, dtype, says", [
    (CPUINFO_AVX2, "float32", "no native bfloat16"),
    (CPUINFO_SAPPHIRE, "bfloat16", "AVX-512 BF16, AMX-BF16"),
    (CPUINFO_NEOVERSE, "bfloat16", "Arm BF16"),
])
def test_auto_dtype_on_cpu_follows_its_features(cpuinfo, dtype, says):
    choice = measure.cpu_dtype_choice(measure.cpu_flags(cpuinfo))
    assert choice.dtype == dtype and says in choice.reason


def test_auto_dtype_without_cpuinfo_is_float32(monkeypatch):
    monkeypatch.setattr(measure, "cpu_flags", lambda cpuinfo=None: None)
    assert measure.dtype_choice("cpu").dtype == "float32"


def test_explicit_dtype_is_kept_and_a_typo_is_refused():
    import torch

    assert measure.pick_dtype("cpu", "bfloat16") is torch.bfloat16
    assert measure.dtype_choice("cpu", "float16").reason == "asked for with --dtype"
    with pytest.raises(RopeconvError, match="did you mean 'bfloat16'"):
        measure.dtype_choice("cpu", "bfloat")


def test_the_result_says_which_dtype_and_why(models, tmp_path):
    text = write_text(tmp_path, "a" * 400)
    report = json.loads(cli(models["copy"], "--lengths", "48", "--text", text, "--device", "cpu", "--json").stdout)
    expected = measure.cpu_dtype_choice()  # this machine's CPU
    assert (report["dtype"], report["dtype_reason"]) == (expected.dtype, expected.reason)


# ---- the time estimate and progress --------------------------------------------------------

class Recorder:
    """A ProbeReporter that keeps every call, in order."""

    def __new__(cls):
        from ropeconv.probe import ProbeReporter

        class _Recorder(ProbeReporter):
            def __init__(self):
                self.calls = []

            def estimate(self, estimate):
                self.calls.append(("estimate", estimate))

            def begin(self, step):
                self.calls.append(("begin", step))

            def advance(self, ticks=1):
                self.calls.append(("advance", ticks))

            def end(self, step, line):
                self.calls.append(("end", step, line))

            def note(self, line):
                self.calls.append(("note", line))

        return _Recorder()


def test_the_estimate_comes_first_then_numbered_steps(models, tmp_path):
    from ropeconv.probe import run_probe

    text = write_text(tmp_path, "a" * 400)
    recorder = Recorder()
    result = run_probe(models["copy"], against=models["random"], lengths="48,128", text=text, device="cpu",
                       progress=recorder)
    kinds = [c[0] for c in recorder.calls if c[0] != "note"]
    assert kinds[0] == "estimate" and kinds.count("begin") == kinds.count("end") == 2
    estimate = recorder.calls[[c[0] for c in recorder.calls].index("estimate")][1]
    assert estimate.warmup_tokens == 128 and estimate.warmup_seconds > 0 and estimate.seconds > 0
    # static RoPE: one pass over the longest window per model gives the 48-token length too
    assert [(s["role"], s["length"]) for s in estimate.steps] == [("against", 128), ("model", 128)]
    steps = [c[1] for c in recorder.calls if c[0] == "begin"]
    assert [(s.index, s.count, s.role, s.length) for s in steps] == [(1, 2, "against", 128), (2, 2, "model", 128)]
    # every advance() of token_losses lands inside its step, and adds up to the step's tick count
    for step in steps:
        i = recorder.calls.index(("begin", step))
        j = next(k for k, c in enumerate(recorder.calls) if c[0] == "end" and c[1] is step)
        assert sum(c[1] for c in recorder.calls[i:j] if c[0] == "advance") == step.ticks
        assert "48 tokens: perplexity" in recorder.calls[j][2] and "128 tokens: perplexity" in recorder.calls[j][2]
    assert result["estimate"]["warmup_tokens"] == 128 and len(result["estimate"]["steps"]) == 2


def test_shorter_lengths_from_the_longest_window_equal_their_own_windows(models, tmp_path):
    from ropeconv.probe import measured_windows, run_probe

    text = write_text(tmp_path, noisy(400, seed=3))
    together = run_probe(models["random"], lengths="48,128", text=text, device="cpu", dtype="float32",
                         progress=False)
    alone = run_probe(models["random"], lengths="48", text=text, device="cpu", dtype="float32", progress=False)
    short, own = together["results"][0]["model"], alone["results"][0]["model"]
    assert short["prefix_of"] == 128 and "prefix_of" not in own
    for key in ("ppl", "ppl_inside", "ppl_last_quarter", "mean_nll"):
        assert short[key] == pytest.approx(own[key], rel=1e-5), key
    assert [b["ppl"] for b in short["buckets"]] == pytest.approx([b["ppl"] for b in own["buckets"]], rel=1e-5)
    assert measured_windows([4096, 12288], "yarn") == [12288]
    assert measured_windows([4096, 12288], "dynamic") == [4096, 12288]  # its θ depends on the pass length


def test_estimate_scales_with_the_window_arithmetic(models):
    import torch

    from ropeconv.probe.progress import window_cost

    model = measure.load_model(models["random"], "cpu", torch.float32)
    linear, attention = measure.flops_per_token(model)
    # 2 layers × (q, o 64·64 + k, v 64·32 + MLP 3·64·128 + 2 norms of 64), final norm, LM head 64·vocab
    assert linear == 2 * (2 * (64 * 64 * 2 + 64 * 32 * 2 + 3 * 64 * 128 + 2 * 64) + 64 + 64 * VOCAB)
    assert attention == 2 * 2 * 4 * 16
    assert window_cost(2048, linear, attention) / window_cost(1024, linear, attention) > 2  # attention ∝ n²


def test_a_long_estimate_warns_and_says_how_to_shorten(models, tmp_path, monkeypatch):
    import ropeconv.probe as probe_module
    from ropeconv.probe.progress import shorten_hint

    monkeypatch.setattr(probe_module, "LONG_ESTIMATE_SECONDS", -1.0)  # any estimate, even 0 s on a fast machine
    text = write_text(tmp_path, "a" * 400)
    human = cli(models["copy"], "--lengths", "48,128", "--text", text, "--device", "cpu")
    assert "estimated time: about" in human.stderr
    assert "warning: this probe will take about" in human.stderr
    # --quick is offered only when it is shorter than the run asked for (on a fast machine the tiny
    # model's 4k + 1.5 × L0 quick windows may not be): the GPU advice is always there
    assert "to shorten it:" in human.stderr and "a GPU (--device cuda)" in " ".join(human.stderr.split())
    assert shorten_hint(95.0) == ("to shorten it: --quick (4k and 1.5 × L0 in one pass per model: about 1 min 35 s "
                                  "here), or a GPU (--device cuda)")
    result = json.loads(cli(models["copy"], "--lengths", "48,128", "--text", text, "--device", "cpu",
                            "--json").stdout)
    assert result["estimate"]["hint"].startswith("to shorten it: --quick")
    quick = json.loads(cli(models["copy"], "--quick", "--text", text, "--device", "cpu", "--json").stdout)
    assert quick["estimate"]["hint"] == "to shorten it: a GPU (--device cuda)"  # --quick is already short


def test_quick_says_how_long_the_full_probe_would_take(models, tmp_path):
    from ropeconv import api

    out = tmp_path / "extended"
    api.extend(str(models["copy"]), "yarn", factor=4, output=out)
    text = write_text(tmp_path, "a" * 400)
    report = json.loads(cli(out, "--quick", "--against", models["copy"], "--text", text, "--json").stdout)
    full = report["full_probe"]
    assert full["lengths"] == default_lengths(TRAINED, 4 * TRAINED) == [64, 128, 256] and full["models"] == 2
    assert full["estimated_seconds"] > 0
    human = cli(out, "--quick", "--against", models["copy"], "--text", text)
    assert "the full one (lengths 64, 128, 256, both models) would take about" in " ".join(human.stdout.split())


def test_the_library_never_imports_the_cli():
    import subprocess
    import sys

    here = Path(__file__).resolve().parent.parent / "ropeconv"
    for path in [*(here / "probe").glob("*.py"), here / "card.py", here / "plot.py", here / "smollm.py"]:
        assert "ropeconv.cli" not in path.read_text(encoding="utf-8"), path
    code = ("import sys, ropeconv.probe, ropeconv.probe.measure, ropeconv.probe.progress, ropeconv.card, "
            "ropeconv.plot; print([m for m in sys.modules if m.startswith('ropeconv.cli')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr


def test_help_keeps_the_revision_syntax():
    for command in ("probe", "inspect"):
        result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        assert "org/name[@revision]" in result.output, command


# ---- hostile and careless input: one line, the right code, never an internal error ---------------

def build_small_vocab(folder: Path) -> Path:
    """A model whose config.json says 64 tokens while its (character) tokenizer makes ids up to 127."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=VOCAB // 2, max_position_embeddings=TRAINED,
                         tie_word_embeddings=False, bos_token_id=None, eos_token_id=0, pad_token_id=0)
    LlamaForCausalLM(config).save_pretrained(folder)
    save_char_tokenizer(folder)
    return folder


def test_against_a_smaller_vocabulary_is_refused_before_loading(models, tmp_path):
    small = build_small_vocab(tmp_path / "small")
    text = write_text(tmp_path, "a" * 400)  # 'a' is token 97: past the 64-token embedding
    result = cli(models["copy"], "--against", small, "--lengths", "48", "--text", text)
    assert_one_line_error(result, "vocabulary of 64 tokens", "smaller than MODEL's (128)", "token 97")
    alone = cli(small, "--lengths", "48", "--text", text)  # the same folder probed alone
    assert_one_line_error(alone, "vocabulary of 64 tokens", "vocab_size")


def test_a_read_only_output_still_prints_the_result_and_says_it_was_not_saved(models, tmp_path):
    """The output folder is bind-mounted read-only (root writes through chmod, not through a read-only
    mount): saving probe.json fails there even to remove its temporary file. Skipped where mounting is
    not permitted."""
    import subprocess

    from ropeconv import api

    out = tmp_path / "extended"
    api.extend(str(models["copy"]), "yarn", factor=2, output=out)
    mounted = tmp_path / "read-only"
    mounted.mkdir()
    if subprocess.run(["mount", "--bind", str(out), str(mounted)], capture_output=True).returncode != 0:
        pytest.skip("bind mounts are not permitted here")
    try:
        if subprocess.run(["mount", "-o", "remount,ro,bind", str(mounted)], capture_output=True).returncode != 0:
            pytest.skip("read-only remounts are not permitted here")
        text = write_text(tmp_path, "a" * 400)
        result = cli(mounted, "--lengths", "48", "--text", text)
        assert result.exit_code == EXIT_OK, result.output  # the verdict's code: the result is complete
        assert "Perplexity" in result.output and "verdict:" in result.output and "Traceback" not in result.output
        said = " ".join(result.output.split())  # rich wraps the warning at the terminal's width
        assert said.count("warning: could not save probe.json") == 1 and "Read-only file system" in said, said
        report = json.loads(cli(mounted, "--lengths", "48", "--text", text, "--json").stdout)
        assert report["saved"] is None and any("could not save probe.json" in w for w in report["warnings"])
    finally:
        subprocess.run(["umount", str(mounted)], capture_output=True)
    assert not (out / "probe.json").exists()


def test_a_folder_where_probe_json_goes_is_a_warning_too(models, tmp_path):
    from ropeconv import api

    out = tmp_path / "extended"
    api.extend(str(models["copy"]), "yarn", factor=2, output=out)
    (out / "probe.json").mkdir()
    result = cli(out, "--lengths", "48", "--text", write_text(tmp_path, "a" * 400), "--json")
    assert result.exit_code == EXIT_OK and "could not save probe.json" in json.loads(result.stdout)["warnings"][-1]


@pytest.mark.parametrize("lengths, says", [
    ("1000000000000", "more than 4294967295 tokens"), ("4194304k", "more than 4294967295 tokens"),
    ("8", "fewer than 16 tokens"), ("1" * 500, "is not a length in tokens"),
])
def test_absurd_lengths_say_the_bound(models, lengths, says):
    result = cli(models["copy"], "--lengths", lengths)
    assert_one_line_error(result, says, "--lengths")
    assert len(result.output) < 300  # a 500-digit value is not printed whole


def test_hostile_text_paths_are_one_line(models, tmp_path):
    assert_one_line_error(cli(models["copy"], "--lengths", "48", "--text", "/dev/zero"), "is not a file")
    assert_one_line_error(cli(models["copy"], "--lengths", "48", "--text", tmp_path), "is not a file")
    assert_one_line_error(cli(models["copy"], "--lengths", "48", "--text", tmp_path / ("a" * 300)),
                          "cannot be looked up", "File name too long")
    forged = tmp_path / "x\nerror: forged"
    result = cli(models["copy"], "--lengths", "48", "--text", forged)
    assert_one_line_error(result, "x\\nerror: forged", "does not exist")  # the newline shown escaped


def test_a_tokenizer_linked_out_of_the_model_folder_is_refused(models, tmp_path):
    import shutil

    folder = Path(shutil.copytree(models["copy"], tmp_path / "linked"))
    outside = tmp_path / "elsewhere.json"
    (folder / "tokenizer.json").rename(outside)
    (folder / "tokenizer.json").symlink_to(outside)
    result = cli(folder, "--lengths", "48", "--text", write_text(tmp_path, "a" * 400))
    assert_one_line_error(result, "tokenizer.json", "outside the model folder")


def test_probe_helpers_tune_uses_are_public():
    import ropeconv.probe as probe

    assert not hasattr(probe, "_load_tokenizer") and not hasattr(probe, "_guarded")  # no private twins left
    assert {"load_tokenizer", "guarded"} <= set(probe.__all__)


def test_text_reporter_lines_cannot_be_forged():
    """The library's plain-line reporter (progress=True) escapes what it prints: a label from a path or a model
    file holding a newline and ESC stays one line without a raw escape."""
    import io

    from ropeconv.probe.progress import TextReporter

    stream = io.StringIO()
    TextReporter(stream).note("loaded model: evil\nerror: forged \x1b[31mred")
    assert stream.getvalue().count("\n") == 1 and "\x1b" not in stream.getvalue()
