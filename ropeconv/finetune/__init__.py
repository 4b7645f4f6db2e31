"""`ropeconv finetune`: PoSE training of an extended model at its target length, with transformers' Trainer.

`run_finetune(model, settings)` reads top to bottom as the run does: plan the extension (as `extend`
plans it) → check the options against it → read and pack the training text → check the disk → stage
the extended model (or find a killed run's staging folder) → evaluate before → train (resuming from
the last checkpoint) → merge LoRA → evaluate after → write the output in one rename → drop the staging.
Under `torchrun`/`accelerate launch` every process runs it; only the main one stages, evaluates and writes.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from ropeconv.errors import RopeconvError
from ropeconv.finetune.pose import PoseDataset, PoseLayout
from ropeconv.finetune.settings import FinetuneSettings
from ropeconv.finetune.stage import Plan, Staging, plan_start, prepare, staging_for
from ropeconv.finetune.train import KEEP_CHECKPOINTS, Progress, TrainConfig, TrainResult

__all__ = ["run_finetune", "FinetuneSettings", "Progress"]
MAX_PACKED_TOKENS = 4_000_000  # the corpus is sampled from; more than this adds tokenizing time, not variety


def run_finetune(model: str, settings: FinetuneSettings, *, report: Callable[[Progress], None] | None = None) -> dict:
    settings.check()
    time_limit = settings.time_seconds()
    plan = plan_start(model, settings)
    layout = PoseLayout(settings.window, plan.target, settings.chunks, settings.skips)
    layout.check()
    from ropeconv.output import check_destination

    dest = Path(settings.output).absolute()
    check_destination(plan.source_folder, dest, settings.force)
    from ropeconv.probe.measure import dtype_choice, pick_device

    device = pick_device(settings.device)
    dtype = dtype_choice(device, settings.dtype)
    state = _distributed(device)
    tokenizer, tokens, corpus, held_out, warnings = _texts(plan, settings, state.num_processes)
    staging = staging_for(dest)
    _check_disk(plan.source_folder, dest, settings.lora)
    with state.main_process_first():
        resumed = prepare(plan, settings, staging)
    before = _evaluate_before(plan, staging, held_out, device, dtype.dtype) if state.is_main_process else {}
    config = TrainConfig(settings.max_steps(state.num_processes), time_limit, settings.lr, settings.batch_size,
                         settings.grad_accum, settings.save_every, settings.seed, settings.lora,
                         dtype.dtype == "bfloat16", device == "cpu", _warmup(settings, time_limit))
    started = time.monotonic()
    trained, result = _train(staging, plan, layout, tokens, settings, config, state.num_processes, report)
    if not state.is_main_process:
        return {"rank": state.process_index, "steps": result.steps}
    after = _measure_in_memory(trained, held_out, device, dtype.dtype)
    document = {"settings": settings.fingerprint(), "target_context": plan.target, "original_context": plan.original_context,
                "method": plan.method, "factor": plan.factor, "device": device, "dtype": asdict(dtype),
                "train": asdict(result), "eval": {"text": held_out.description, "length": len(held_out.ids),
                                                   "before": before, "after": after},
                "timings": {"total_seconds": time.monotonic() - started, "train_seconds": result.seconds},
                "resumed": resumed, "warnings": warnings}
    _write(plan, staging, dest, trained, document, corpus, settings)
    shutil.rmtree(staging.root, ignore_errors=True)
    return {"output": str(dest), "source": str(plan.source_folder), **document, "launch": _serve_lines(dest)}


def _serve_lines(dest: Path) -> list[dict]:
    """How to serve the output, per engine, as `check` (and `extend`) say it for the written config."""
    from ropeconv.check import run_check

    return run_check(str(dest))["launch"]


def _distributed(device: str):
    """accelerate's process state: one process, or each of a torchrun / accelerate launch group (gloo on CPU)."""
    import os

    from accelerate import PartialState

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and device == "cpu":
        return PartialState(cpu=True, backend="gloo")  # as TrainingArguments will ask for it
    return PartialState(cpu=device == "cpu")


def _texts(plan: Plan, settings: FinetuneSettings, world: int):
    """(tokenizer, packed training tokens, corpus, held-out evaluation text, warnings)."""
    from ropeconv.finetune.data import load_corpus, pack
    from ropeconv.finetune.evaluate import eval_text
    from ropeconv.probe import load_tokenizer

    tokenizer = load_tokenizer(plan.source_folder)
    wanted = min(settings.max_steps(world) * settings.global_batch(world) * settings.window, MAX_PACKED_TOKENS)
    corpus = load_corpus(list(settings.text), settings.dataset, max(wanted, settings.window * 4))
    tokens = pack(tokenizer, corpus, max(wanted, settings.window * 4))
    if len(tokens) < settings.window:
        raise RopeconvError(f"the training text has {len(tokens)} tokens, fewer than one --window of {settings.window}",
                            "pass a longer --text or a smaller --window")
    held_out = eval_text(tokenizer, settings.eval_text, settings.eval_length or plan.target, plan.original_context)
    warnings = list(plan.warnings)
    if held_out.description["sha256"] in {t.sha256 for t in corpus.texts}:
        warnings.append("the evaluation text is also a training text: the before/after figures measure memorisation, "
                        "not long-context ability — pass a different --eval-text")
    return tokenizer, tokens, corpus, held_out, warnings


def _warmup(settings: FinetuneSettings, time_limit: float | None) -> int:
    return 10 if time_limit is not None else min(settings.max_steps(1) // 10, 50)


def _check_disk(source: Path, dest: Path, lora: int | None) -> None:
    """Estimate the checkpoints (fp32 weights + AdamW's two moments for what trains) and the output, and
    refuse before training when the destination's disk cannot hold them."""
    weights = sum(p.stat().st_size for p in source.glob("*.safetensors"))
    checkpoint = weights if lora else weights * 6  # bf16/fp16 source → ×2 for fp32, ×3 with the moments
    needed = checkpoint * KEEP_CHECKPOINTS + weights
    parent = next(p for p in [dest.parent, *dest.parent.parents] if p.exists())
    free = shutil.disk_usage(parent).free
    if free < needed:
        raise RopeconvError(f"not enough free space in {parent} for the checkpoints and the output: about "
                            f"{needed / 2**30:.2f} GiB needed, {free / 2**30:.2f} GiB free",
                            "free space there or choose another -o")


def _evaluate_before(plan: Plan, staging: Staging, held_out, device: str, dtype_name: str) -> dict:
    """Unscaled and training-free perplexities (cached in the staging folder: a resumed run reuses them)."""
    try:
        return json.loads(staging.eval_before.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    import torch

    from ropeconv.finetune.evaluate import measure_folder

    dtype = getattr(torch, dtype_name)
    before = {"unscaled": measure_folder(plan.unscaled_folder, held_out, device, dtype) if plan.unscaled_folder else None,
              "training_free": measure_folder(staging.model, held_out, device, dtype)}
    staging.eval_before.write_text(json.dumps(before), encoding="utf-8")
    return before


def _train(staging: Staging, plan: Plan, layout: PoseLayout, tokens, settings: FinetuneSettings, config: TrainConfig,
           world: int, report) -> tuple[object, TrainResult]:
    """Load the staged model in float32, force its target-length rotary, add LoRA, train; returns the merged model."""
    import torch
    from transformers import set_seed

    from ropeconv.finetune import train
    from ropeconv.probe.measure import load_model
    from ropeconv.tune import swap

    model = load_model(staging.model, "cpu", torch.float32)
    model.train()
    restore = train.force_long_rotary(model, plan.target)
    set_seed(settings.seed)
    wrapped = train.with_lora(model, settings.lora) if settings.lora else model
    dataset = PoseDataset(tokens, layout, settings.seed, config.max_steps * settings.global_batch(world))
    result = train.train(wrapped, dataset, config, staging.checkpoints,
                         settings.window * settings.global_batch(world), report)
    model = train.merged(wrapped)
    if restore is not None:
        swap.restore(restore)
    model.eval()
    return model, result


def _measure_in_memory(model, held_out, device: str, dtype_name: str) -> dict:
    import torch

    from ropeconv.finetune.evaluate import measure

    model.to(device=device, dtype=getattr(torch, dtype_name))
    summary = measure(model, held_out)
    model.to(dtype=torch.float32)
    return summary


def _write(plan: Plan, staging: Staging, dest: Path, model, document: dict, corpus, settings: FinetuneSettings) -> None:
    from ropeconv.finetune.write import PLOT_NAME, plot, write_output

    train = document["train"]
    record = {"steps": train["steps"], "tokens": train["tokens"], "window": settings.window, "chunks": settings.chunks,
              "position_skips": settings.skips, "lr": settings.lr, "lora": settings.lora, "seed": settings.seed,
              "batch_size": settings.batch_size, "grad_accum": settings.grad_accum, "world_size": train["world_size"],
              "target_context": plan.target, "data": corpus.describe(),
              "eval_text_sha256": document["eval"]["text"]["sha256"]}
    before, after = document["eval"]["before"], document["eval"]["after"]
    plot(staging.model / PLOT_NAME, train["losses"],
         {"unscaled": before.get("unscaled"), "training-free": before.get("training_free"), "fine-tuned": after},
         plan.original_context, f"{plan.method} ×{plan.factor:g} → {plan.target} tokens, PoSE window {settings.window}")
    state = {k: v for k, v in model.state_dict().items()}
    document["files"] = write_output(staging.model, dest, state, record, document, force=settings.force)
