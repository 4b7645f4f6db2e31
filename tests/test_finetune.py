"""`ropeconv finetune`: PoSE positions, the target-length rotary in training, the Trainer loop with
checkpoints, kill -9 and resume, 2-process DDP (gloo, CPU), LoRA merge, the output, bad input.

Tiny random Llamas (2 layers, hidden 64, L0 = 64) with a one-token-per-character tokenizer; ×4
extensions, so the target is 256 tokens. Everything runs for real (the CLI in subprocesses, torchrun
for DDP); the only stub is shutil.disk_usage in the no-room test (listed there)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import build_tiny
from conftest import save_char_tokenizer

L0 = 64
TARGET = 256
ROOT = Path(__file__).resolve().parent.parent


def tiny_model(folder: Path, **overrides) -> Path:
    build_tiny("llama", folder, max_position_embeddings=L0, **overrides)
    save_char_tokenizer(folder)
    return folder


def text_file(path: Path, chars: int = 20000) -> Path:
    """A learnable text: a few sentences repeated (a tiny model's loss falls on it within steps)."""
    base = "the quick brown fox jumps over the lazy dog. pack my box with five dozen liquor jugs.\n"
    path.write_text((base * (chars // len(base) + 1))[:chars], encoding="utf-8")
    return path


def cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ropeconv", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def finetune_args(model: Path, out: Path, *extra) -> list:
    return ["finetune", model, "-o", out, "--method", "yarn", "--factor", "4", "--window", "64", "--lr", "1e-3",
            "--device", "cpu", "--dtype", "float32", "--eval-length", "256", *extra]


def weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


# ---- PoSE positions ------------------------------------------------------------------------------

def test_pose_positions_cover_the_target_and_are_reproducible():
    from ropeconv.finetune.pose import PoseLayout, sample

    layout = PoseLayout(window=16, target=TARGET, chunks=2)
    tokens = np.arange(1000, dtype=np.int64)
    seen = set()
    for i in range(400):
        ids, pos = sample(layout, tokens, seed=7, index=i)
        assert len(ids) == len(pos) == 16
        assert pos[0] == 0 and (np.diff(pos) >= 1).all() and pos[-1] < TARGET  # increasing, inside the target
        assert (np.diff(ids) == 1).all()  # a contiguous slice of the corpus
        seen.update(pos.tolist())
    assert seen == set(range(TARGET))
    again = [sample(layout, tokens, 7, i)[1].tolist() for i in range(20)]
    assert again == [sample(layout, tokens, 7, i)[1].tolist() for i in range(20)]
    assert again != [sample(layout, tokens, 8, i)[1].tolist() for i in range(20)]


def test_the_control_layout_has_no_skips():
    from ropeconv.finetune.pose import PoseLayout, sample

    ids, pos = sample(PoseLayout(16, TARGET, 2, skips=False), np.arange(100), 0, 3)
    assert pos.tolist() == list(range(16))


def test_default_corpus_leaves_out_the_evaluation_modules():
    from ropeconv.finetune.data import stdlib_training_files
    from ropeconv.probe.text import STDLIB_MODULES

    files = stdlib_training_files()
    assert len(files) > 50
    assert not {p.stem for p in files} & set(STDLIB_MODULES)


# ---- the rotary embedding used in training -------------------------------------------------------

@pytest.mark.parametrize("method, params", [
    ("dynamic", {}),
    ("longrope", {"short_factor": [1.0] * 8, "long_factor": [1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.0]}),
])
def test_training_forward_uses_the_long_rotary(tmp_path, method, params):
    """A 16-token window at positions 0…15 (below L0): transformers alone would pick the short form."""
    import torch
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    from ropeconv import api
    from ropeconv.finetune import train
    from ropeconv.finetune.pose import PoseDataset, PoseLayout
    from ropeconv.probe.measure import load_model
    from ropeconv.tune.swap import rotary_modules

    staged = tmp_path / "ext"
    api.extend(str(tiny_model(tmp_path / "m")), method, factor=4, params=params, output=staged)
    model = load_model(staged, "cpu", torch.float32)
    rotary = rotary_modules(model)[0]
    long_inv, _ = ROPE_INIT_FUNCTIONS[method](rotary.config, "cpu", seq_len=TARGET)
    short_inv = rotary.original_inv_freq.clone()
    assert not torch.allclose(long_inv, short_inv)
    seen = []
    rotary.register_forward_hook(lambda module, args, out: seen.append(module.inv_freq.clone()))

    def one_step(folder: Path) -> None:
        config = train.TrainConfig(1, None, 1e-4, 1, 1, 100, 0, None, False, True)
        dataset = PoseDataset(np.arange(200) % 128, PoseLayout(16, TARGET, 2, skips=False), 0, 1)
        train.train(model, dataset, config, folder, 16)

    one_step(tmp_path / "plain")  # without forcing: the short form (the check below can fail)
    assert torch.allclose(seen[-1], short_inv)
    train.force_long_rotary(model, TARGET)
    one_step(tmp_path / "forced")
    assert seen and torch.allclose(seen[-1], long_inv.float())


# ---- training, output, check and probe -----------------------------------------------------------

def test_finetune_trains_writes_and_the_output_checks_and_probes(tmp_path):
    model = tiny_model(tmp_path / "m")
    text = text_file(tmp_path / "train.txt")
    out = tmp_path / "out"
    done = cli(*finetune_args(model, out, "--steps", "30", "--text", text, "--eval-text", text, "--json"))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    losses = [e["loss"] for e in result["train"]["losses"]]
    assert len(losses) == 30 and np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])
    assert any("evaluation text is also a training text" in w for w in result["warnings"])
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "ropeconv.json", "finetune.json", "finetune.png",
            "tokenizer.json"} <= names
    assert not (tmp_path / "out.finetune-tmp").exists()
    record = json.loads((out / "ropeconv.json").read_text())
    assert record["method"] == "yarn" and record["finetune"]["steps"] == 30
    assert record["finetune"]["data"]["sha256"] and record["finetune"]["window"] == 64
    document = json.loads((out / "finetune.json").read_text())
    before, after = document["eval"]["before"], document["eval"]["after"]
    assert after["ppl"] < before["training_free"]["ppl"]  # trained on this very text
    assert weights(out)["model.embed_tokens.weight"].dtype == weights(model)["model.embed_tokens.weight"].dtype
    assert json.loads((out / "config.json").read_text())["rope_parameters"]["rope_type"] == "yarn"
    assert {line["engine"] for line in result["launch"]} >= {"vLLM", "Ollama"}  # how to serve it, as extend says
    assert any(f"vllm serve {out}" in line["command"] for line in result["launch"])
    check = cli("check", out, "--json")
    assert check.returncode == 0, check.stdout + check.stderr
    probe = cli("probe", out, "--lengths", "64,128", "--device", "cpu", "--json")
    assert probe.returncode in (0, 1), probe.stderr  # a verdict (tiny random models may fail it), not an error
    assert json.loads(probe.stdout)["model"]


# ---- kill -9, then resume ------------------------------------------------------------------------

def test_kill_then_resume_continues_from_the_last_checkpoint(tmp_path):
    model = tiny_model(tmp_path / "m")
    text = text_file(tmp_path / "train.txt")
    args = ["--steps", "40", "--save-every", "5", "--text", text, "--json"]
    out = tmp_path / "out"
    staging = tmp_path / "out.finetune-tmp"
    proc = subprocess.Popen([sys.executable, "-m", "ropeconv", *map(str, finetune_args(model, out, *args))],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not (staging / "checkpoints" / "checkpoint-10" / "trainer_state.json").exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert not out.exists() and staging.is_dir()
    resumed = cli(*finetune_args(model, out, *args))  # the same command again
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads(resumed.stdout)
    assert result["resumed"] and result["train"]["resumed_from"] >= 10 and result["train"]["steps"] == 40
    assert [e["step"] for e in result["train"]["losses"]] == list(range(1, 41))  # earlier steps from the checkpoint
    whole = cli(*finetune_args(model, tmp_path / "whole", *args))
    assert whole.returncode == 0, whole.stderr
    assert json.loads(whole.stdout)["train"]["resumed_from"] is None
    assert max_diff(weights(out), weights(tmp_path / "whole")) < 1e-3


# ---- LoRA ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("tied", [False, True])
def test_lora_merged_output_matches_the_adapted_model(tmp_path, tied):
    """Adapters, embeddings and norms all moved away from their start: the written, merged model's
    logits equal the peft model's."""
    import torch

    from ropeconv.finetune import train
    from ropeconv.finetune.write import write_output
    from ropeconv.probe.measure import load_model

    from ropeconv import api

    staged = tmp_path / "ext"
    api.extend(str(tiny_model(tmp_path / "m", tie_word_embeddings=tied)), "yarn", factor=4, output=staged)
    model = load_model(staged, "cpu", torch.float32)
    peft_model = train.with_lora(model, 4)
    trainable = [(n, p) for n, p in peft_model.named_parameters() if p.requires_grad]
    assert any("lora_" in n for n, _ in trainable) and any("embed" in n for n, _ in trainable)
    assert any("norm" in n for n, _ in trainable)
    torch.manual_seed(1)
    with torch.no_grad():
        for _, p in trainable:
            p.add_(torch.randn_like(p) * 0.05)
    ids = torch.randint(0, 128, (1, 200))
    with torch.no_grad():
        adapted = peft_model(input_ids=ids).logits
        merged_model = train.merged(peft_model)
        merged = merged_model(input_ids=ids).logits
    assert torch.allclose(adapted, merged, atol=1e-4)
    write_output(staged, tmp_path / "out", merged_model.state_dict(), {}, {}, force=False)
    reloaded = load_model(tmp_path / "out", "cpu", torch.float32)
    with torch.no_grad():
        assert torch.allclose(reloaded(input_ids=ids).logits, adapted, atol=1e-4)


# ---- two processes (DDP, gloo on CPU) ------------------------------------------------------------

def test_two_processes_train_like_one_with_the_same_global_batch(tmp_path):
    import socket

    model = tiny_model(tmp_path / "m")
    text = text_file(tmp_path / "train.txt")
    common = ["--steps", "6", "--text", text, "--json"]
    one = cli(*finetune_args(model, tmp_path / "one", "--batch-size", "2", *common))
    assert one.returncode == 0, one.stderr
    with socket.socket() as s:  # a free port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr",
                          "127.0.0.1", "--master-port", str(port), "-m", "ropeconv",
                          *map(str, finetune_args(model, tmp_path / "two", "--batch-size", "1", *common))],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert two.returncode == 0, two.stderr
    result = json.loads(two.stdout)  # one document: only the main process prints
    assert result["train"]["world_size"] == 2 and result["train"]["tokens"] == 6 * 2 * 64
    alone = weights(tmp_path / "one")
    together = weights(tmp_path / "two")
    start = weights(model)
    moved = max_diff(alone, start)
    assert moved > 1e-3  # training changed the weights …
    assert max_diff(together, alone) < 0.05 * moved  # … and both runs changed them the same way


# ---- bad input: one line, exit 2, nothing written -------------------------------------------------

def run_in_process(*args) -> tuple[int, str]:
    from typer.testing import CliRunner

    from ropeconv.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stderr


@pytest.mark.parametrize("extra, message", [
    (["--steps", "0"], "--steps 0 must be at least 1"),
    (["--steps", "5", "--window", "512"], "--window 512 is longer than the target context 256"),
    (["--steps", "5", "--window", "2"], "--window 2 is too short to split into 2 chunks"),
    (["--steps", "5", "--factor", "0.5"], "--factor '0.5' must be greater than 1"),
    (["--steps", "5", "--resume"], "--resume found no run to continue"),
    (["--time", "soon"], "--time 'soon' is not a duration"),
    (["--steps", "5", "--dataset", "someone/texts"], "--dataset needs the 'datasets' library"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, extra, message):
    model = tiny_model(tmp_path / "m")
    before = sorted(p.name for p in tmp_path.iterdir())
    text = text_file(tmp_path / "t.txt", 2000)
    args = finetune_args(model, tmp_path / "out", *([] if "--dataset" in extra else ["--text", text]))
    if "--factor" in extra:
        args[args.index("--factor") + 1] = extra[extra.index("--factor") + 1]
        extra = [e for i, e in enumerate(extra) if e != "--factor" and extra[i - 1] != "--factor"]
    code, stderr = run_in_process(*args, *extra)
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(before + ["t.txt"])  # no output, no staging


def test_no_room_for_the_checkpoints_is_refused_before_training(tmp_path, monkeypatch):
    """Stub: shutil.disk_usage reports 1 MiB free (filling a real disk is not an option in a test)."""
    import shutil
    from collections import namedtuple

    from ropeconv.errors import RopeconvError
    from ropeconv.finetune import FinetuneSettings, run_finetune

    model = tiny_model(tmp_path / "m")
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(2**40, 2**40 - 2**20, 2**20))
    settings = FinetuneSettings(output=tmp_path / "out", method="yarn", factor=4, steps=5, window=64, device="cpu",
                                text=(text_file(tmp_path / "t.txt", 2000),), eval_length=256)
    with pytest.raises(RopeconvError, match="not enough free space"):
        run_finetune(str(model), settings)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "t.txt"]
