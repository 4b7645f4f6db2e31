"""What `ropeconv finetune` is asked to do, typed and validated before anything is read or written."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ropeconv.errors import RopeconvError

DEFAULT_STEPS = 1000
DEFAULT_WINDOW = 2048
DEFAULT_LR = 2e-5


@dataclass(frozen=True)
class FinetuneSettings:
    output: Path
    method: str | None = None
    factor: Any = None
    target_context: Any = None
    original_context: Any = None
    params: dict = field(default_factory=dict)
    steps: int | None = None
    time_limit: str | float | None = None
    tokens: int | None = None
    window: int = DEFAULT_WINDOW
    chunks: int = 2
    skips: bool = True  # False trains the same way without position skips (the benchmark's control)
    lr: float = DEFAULT_LR
    lora: int | None = None
    text: tuple[Path, ...] = ()
    dataset: str | None = None
    eval_text: Path | None = None
    eval_length: int | None = None
    seed: int = 0
    batch_size: int = 1
    grad_accum: int = 1
    save_every: int = 100
    resume: bool = False
    force: bool = False
    device: str = "auto"
    dtype: str = "auto"  # the probe's rule: bfloat16 (mixed precision) only where the device computes it natively

    def check(self) -> None:
        """Bad values, each one line naming the option; nothing has been read yet."""
        budgets = [b for b in (self.steps, self.time_limit, self.tokens) if b is not None]
        if len(budgets) > 1:
            raise RopeconvError("--steps, --time and --tokens were combined", "give one training budget")
        for name, value in (("--steps", self.steps), ("--tokens", self.tokens), ("--window", self.window),
                            ("--batch-size", self.batch_size), ("--grad-accum", self.grad_accum),
                            ("--save-every", self.save_every), ("--chunks", self.chunks)):
            if value is not None and value < 1:
                raise RopeconvError(f"{name} {value} must be at least 1", f"give a positive {name}")
        if self.lora is not None and self.lora < 1:
            raise RopeconvError(f"--lora {self.lora} must be a rank of at least 1", "e.g. --lora 16, or leave it out")
        if not (math.isfinite(self.lr) and 0 < self.lr < 1):
            raise RopeconvError(f"--lr {self.lr} is not a learning rate", "e.g. --lr 2e-5")
        if self.eval_length is not None and self.eval_length < 16:
            raise RopeconvError(f"--eval-length {self.eval_length} is too short", "give at least 16 tokens, e.g. 32k")

    def time_seconds(self) -> float | None:
        from ropeconv.tune import parse_duration

        return parse_duration(self.time_limit)

    def global_batch(self, world_size: int) -> int:
        return self.batch_size * self.grad_accum * world_size

    def max_steps(self, world_size: int) -> int:
        """Optimizer steps: --steps, or enough for --tokens; effectively unbounded under --time."""
        if self.tokens is not None:
            return max(1, math.ceil(self.tokens / (self.window * self.global_batch(world_size))))
        if self.time_limit is not None:
            return 10**9
        return self.steps if self.steps is not None else DEFAULT_STEPS

    def fingerprint(self) -> dict:
        """What a checkpoint depends on: a staging folder made with other values is not resumed."""
        skip = {"output", "resume", "force", "time_limit", "eval_text", "eval_length", "device", "dtype"}
        return {k: (str(v) if isinstance(v, Path) else [str(x) for x in v] if isinstance(v, tuple) else v)
                for k, v in asdict(self).items() if k not in skip}
