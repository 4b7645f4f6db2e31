"""The output: the staged model with the trained weights (safetensors, each tensor in the dtype the
source stored), its config and tokenizer as `extend` wrote them, the record with a `finetune`
section, finetune.json and finetune.png — built beside the destination and renamed into place
(`ropeconv.output.write_model`)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ropeconv.errors import RopeconvError
from ropeconv.redact import redact_json
from ropeconv.output import FilePlan, write_model
from ropeconv.record import RECORD_NAME, read_folder_record_json

DOCUMENT_NAME = "finetune.json"
PLOT_NAME = "finetune.png"


def shard_writer(state: dict, shard: Path) -> Callable[[Path], None]:
    """Write `shard`'s tensors (same names, dtypes and metadata) with the values of `state`."""

    def write(target: Path) -> None:
        from safetensors import safe_open
        from safetensors.torch import save_file

        tensors = {}
        with safe_open(shard, "pt") as f:
            metadata = f.metadata() or {"format": "pt"}
            for name in f.keys():
                if name not in state:  # a stored rotary buffer, say: kept as it is
                    tensors[name] = f.get_tensor(name)
                    continue
                stored = f.get_slice(name)
                dtype = _torch_dtype(stored.get_dtype())
                tensors[name] = state[name].detach().to(device="cpu", dtype=dtype, copy=True).contiguous()
        save_file(tensors, str(target), metadata=metadata)

    return write


def _torch_dtype(name: str):
    import torch

    table = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}
    if name not in table:
        raise RopeconvError(f"a weight stored as {name} cannot be written back after training",
                            "fine-tune a model stored in float32, float16 or bfloat16")
    return table[name]


def weight_shards(folder: Path) -> list[Path]:
    shards = sorted(folder.glob("*.safetensors"))
    if not shards:
        raise RopeconvError(f"{folder.name} has no safetensors weights to write back after training",
                            "convert the model to safetensors first (save_pretrained does)")
    return shards


def write_output(staged: Path, dest: Path, state: dict, finetune_record: dict, document: dict, *,
                 force: bool) -> dict:
    """Build `dest` from `staged` with the trained weights; returns the write report."""
    record = read_folder_record_json(staged) or {}
    record["finetune"] = finetune_record
    plan = FilePlan(json_files={RECORD_NAME: redact_json(record), DOCUMENT_NAME: redact_json(document)},
                    shard_writers={p.name: shard_writer(state, p) for p in weight_shards(staged)},
                    own_measurements={PLOT_NAME})
    return write_model(staged, dest, plan, force=force).to_dict()


def plot(path: Path, losses: list[dict], curves: dict[str, dict | None], trained: int, title: str) -> None:
    """Loss per step; perplexity by position bucket for each measured model."""
    from ropeconv.plot import _matplotlib

    plt = _matplotlib()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    if losses:
        left.plot([e["step"] for e in losses], [e["loss"] for e in losses], color="tab:blue")
    left.set(xlabel="step", ylabel="training loss (nats)", title="training loss")
    for label, summary in curves.items():
        if not summary:
            continue
        buckets = summary["buckets"]
        right.plot([(b["start"] + b["end"]) / 2 for b in buckets], [b["ppl"] for b in buckets], marker="o", label=label)
    right.axvline(trained, color="grey", linestyle="--", linewidth=1)
    right.set(xlabel="position", ylabel="perplexity", title="perplexity by position (held-out text)", yscale="log")
    right.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
