"""The training loop: transformers' Trainer over PoSE samples, with the target-length rotary forced,
optional LoRA (peft), checkpoints every N steps and resume from the last complete one.

torch, transformers and peft are imported inside the functions (this package is reachable from the CLI).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


CHECKPOINT_PREFIX = "checkpoint-"
STATE_FILE = "trainer_state.json"  # the Trainer writes it last: its presence marks a complete checkpoint
KEEP_CHECKPOINTS = 2
LENGTH_DEPENDENT = ("dynamic", "longrope")


@dataclass(frozen=True)
class TrainConfig:
    """What the Trainer is asked to do."""

    max_steps: int
    time_limit: float | None
    learning_rate: float
    batch_size: int
    grad_accum: int
    save_every: int
    seed: int
    lora_rank: int | None
    bf16: bool
    use_cpu: bool
    warmup_steps: int = 0


@dataclass
class Progress:
    """One training step as the progress display shows it."""

    step: int
    total: int | None
    loss: float | None
    tokens_per_second: float
    eta_seconds: float | None


@dataclass
class TrainResult:
    losses: list[dict] = field(default_factory=list)  # {"step", "loss", "learning_rate"} per step
    steps: int = 0
    resumed_from: int | None = None
    seconds: float = 0.0
    tokens: int = 0
    tokens_per_second: float | None = None
    world_size: int = 1
    trainable_parameters: int = 0


# ---- the rotary embedding at the target length ---------------------------------------------------

def force_long_rotary(model, target: int) -> object | None:
    """For length-dependent scalings (dynamic, LongRoPE), make every rotary module use the form the model
    takes at `target` tokens for every forward: a short PoSE window (max(position_ids) may stay below L0)
    would otherwise get the short form (LongRoPE's short factors, dynamic's unscaled θ). Returns what to
    restore with `ropeconv.tune.swap.restore`, or None when the scaling does not depend on length."""
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    from ropeconv.tune import swap

    modules = swap.rotary_modules(model)
    rope_type = getattr(modules[0], "rope_type", "default")
    if rope_type not in LENGTH_DEPENDENT:
        return None
    original = swap.save(model)
    module = modules[0]
    params = module.config.rope_parameters
    seq_len = target if rope_type == "dynamic" else int(params["original_max_position_embeddings"]) + 1
    seq_len = max(seq_len, target)
    inv_freq, attention = ROPE_INIT_FUNCTIONS[rope_type](module.config, module.inv_freq.device, seq_len=seq_len)
    swap.apply(model, inv_freq.float().tolist(), float(attention))
    return original


# ---- checkpoints ---------------------------------------------------------------------------------

def complete_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """(step, path) of the checkpoints a killed run left whole, oldest first."""
    found = []
    for path in folder.glob(CHECKPOINT_PREFIX + "*") if folder.is_dir() else []:
        step = path.name[len(CHECKPOINT_PREFIX):]
        if not step.isdigit():
            continue
        try:
            json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        found.append((int(step), path))
    return sorted(found)


def drop_incomplete_checkpoints(folder: Path) -> None:
    """A checkpoint cut short by a kill has no (readable) trainer state: it cannot be resumed, remove it."""
    whole = {path for _, path in complete_checkpoints(folder)}
    for path in folder.glob(CHECKPOINT_PREFIX + "*") if folder.is_dir() else []:
        if path not in whole:
            shutil.rmtree(path, ignore_errors=True)


# ---- LoRA ----------------------------------------------------------------------------------------

def with_lora(model, rank: int):
    """LoRA on every linear layer, with the embeddings and norms fully trainable (LongLoRA's "LoRA+":
    the extension needs them, adapters alone do not learn long context)."""
    from peft import LoraConfig, get_peft_model

    embed = model.get_input_embeddings()
    full = sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                   if name and (module is embed or "norm" in type(module).__name__.lower())})
    tied = model.get_output_embeddings() is not None and model.get_output_embeddings().weight is embed.weight
    config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules="all-linear",
                        modules_to_save=full, task_type="CAUSAL_LM", ensure_weight_tying=tied)
    return get_peft_model(model, config)


def merged(model):
    """The plain model with LoRA folded into its weights (a model without LoRA as it is)."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


# ---- the Trainer ---------------------------------------------------------------------------------

def training_arguments(config: TrainConfig, checkpoints: Path):
    import dataclasses

    from transformers import TrainingArguments

    kwargs = dict(
        output_dir=str(checkpoints), max_steps=config.max_steps, per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum, learning_rate=config.learning_rate,
        lr_scheduler_type="constant_with_warmup", warmup_steps=config.warmup_steps, weight_decay=0.0,
        save_strategy="steps", save_steps=config.save_every, save_total_limit=KEEP_CHECKPOINTS,
        logging_strategy="steps", logging_steps=1, report_to=[], disable_tqdm=True, seed=config.seed,
        data_seed=config.seed, bf16=config.bf16, use_cpu=config.use_cpu, remove_unused_columns=False,
        dataloader_num_workers=0, ddp_find_unused_parameters=False, ddp_backend="gloo" if config.use_cpu and _world_size() > 1 else None, max_grad_norm=1.0,
        save_safetensors=True)
    known = {f.name for f in dataclasses.fields(TrainingArguments)}  # save_safetensors left transformers 5 at some point
    return TrainingArguments(**{k: v for k, v in kwargs.items() if k in known})


def _world_size() -> int:
    import os

    return int(os.environ.get("WORLD_SIZE", "1"))


def _trainer_class():
    from torch.utils.data import SequentialSampler
    from transformers import Trainer

    class PoseTrainer(Trainer):
        """Samples in index order: each sample is already random (and fixed) for its index, so one process
        with batch B and two processes with B/2 each see the same global batches."""

        def _get_train_sampler(self, train_dataset=None):
            return SequentialSampler(train_dataset if train_dataset is not None else self.train_dataset)

    return PoseTrainer


def _callback(config: TrainConfig, tokens_per_step: int, report: Callable[[Progress], None] | None, start_step: int):
    from transformers import TrainerCallback

    class Watch(TrainerCallback):
        """Progress (tokens/s and an ETA from the steps of this run) and the --time limit."""

        def __init__(self):
            self.started = time.monotonic()
            self.loss: float | None = None

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.loss = float(logs["loss"])

        def on_step_end(self, args, state, control, **kwargs):
            elapsed = max(time.monotonic() - self.started, 1e-9)
            done = state.global_step - start_step
            rate = done * tokens_per_step / elapsed
            if config.time_limit is not None:
                eta = max(config.time_limit - elapsed, 0.0)
                if elapsed >= config.time_limit:
                    control.should_training_stop = True
                total = None
            else:
                total = config.max_steps
                eta = (total - state.global_step) * elapsed / done if done else None
            if report is not None and state.is_world_process_zero:
                report(Progress(state.global_step, total, self.loss, rate, eta))

    return Watch()


def train(model, dataset, config: TrainConfig, checkpoints: Path, tokens_per_step: int,
          report: Callable[[Progress], None] | None = None) -> TrainResult:
    """Train `model` in place on `dataset`; resumes from the last complete checkpoint in `checkpoints`."""
    from transformers import PrinterCallback, default_data_collator

    from ropeconv.probe.measure import quiet_transformers

    drop_incomplete_checkpoints(checkpoints)
    found = complete_checkpoints(checkpoints)
    resume = found[-1] if found else None
    args = training_arguments(config, checkpoints)
    trainer = _trainer_class()(model=model, args=args, train_dataset=dataset, data_collator=default_data_collator,
                               callbacks=[_callback(config, tokens_per_step, report, resume[0] if resume else 0)])
    trainer.remove_callback(PrinterCallback)  # its raw dicts on stdout would break --json; progress is ours
    started = time.monotonic()
    with quiet_transformers():
        trainer.train(resume_from_checkpoint=str(resume[1]) if resume else None)
    seconds = time.monotonic() - started
    steps = trainer.state.global_step
    done = steps - (resume[0] if resume else 0)
    losses = [{"step": int(e["step"]), "loss": float(e["loss"]), "learning_rate": e.get("learning_rate")}
              for e in trainer.state.log_history if "loss" in e]
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return TrainResult(losses, steps, resume[0] if resume else None, seconds, steps * tokens_per_step,
                       done * tokens_per_step / seconds if seconds > 0 and done else None,
                       args.world_size, trainable)
