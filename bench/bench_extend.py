"""Benchmark: `ropeconv extend` against doing the same by hand through transformers.

Builds a synthetic sharded Llama checkpoint (TinyLlama-1.1B shape, bf16, ≈2.2 GB), then times,
each in its own process, with wall time and peak RSS from the OS (os.wait4):

  A. ropeconv extend SRC --method yarn --factor 4 -o OUT
  B. transformers: from_pretrained(SRC) → edit config → save_pretrained(OUT)
  C. ropeconv --help   against   python -c "import torch"
  D. ropeconv.api.extend timed in-process (what recipes and library users call), without the
     interpreter start-up and imports that dominate A

Run by hand (not a test):  python bench/bench_extend.py [--workdir DIR] [--runs 3]
Targets: A ≥ 100× faster and ≥ 20× less peak memory than B; C under 0.3 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 2048,
    "intermediate_size": 5632, "num_hidden_layers": 22, "num_attention_heads": 32, "num_key_value_heads": 4,
    "vocab_size": 32000, "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
    "rope_scaling": None, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
}

IN_PROCESS = """
import shutil, sys, time
from ropeconv import api
src, out, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
times = []
for _ in range(runs):
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    api.extend(src, "yarn", factor=4, output=out)
    times.append(time.perf_counter() - start)
print(sorted(times)[len(times) // 2])
"""

HAND_SCRIPT = """
import json, sys, torch
from transformers import AutoModelForCausalLM
src, out = sys.argv[1], sys.argv[2]
model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.bfloat16)
model.config.rope_parameters = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                                "original_max_position_embeddings": 2048}
model.config.max_position_embeddings = 8192
model.save_pretrained(out, max_shard_size="1GB")
"""


def build_checkpoint(folder: Path) -> int:
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(CONFIG, indent=2))
    h, i, kv = CONFIG["hidden_size"], CONFIG["intermediate_size"], 2048 // 32 * 4
    tensors = {"model.embed_tokens.weight": (32000, h), "lm_head.weight": (32000, h), "model.norm.weight": (h,)}
    for n in range(CONFIG["num_hidden_layers"]):
        p = f"model.layers.{n}."
        tensors.update({p + "self_attn.q_proj.weight": (h, h), p + "self_attn.k_proj.weight": (kv, h),
                        p + "self_attn.v_proj.weight": (kv, h), p + "self_attn.o_proj.weight": (h, h),
                        p + "mlp.gate_proj.weight": (i, h), p + "mlp.up_proj.weight": (i, h),
                        p + "mlp.down_proj.weight": (h, i), p + "input_layernorm.weight": (h,),
                        p + "post_attention_layernorm.weight": (h,)})
    names, shard, shards, size, total = list(tensors), {}, [], 0, 0
    gen = torch.Generator().manual_seed(0)
    for name in names + [None]:
        if name is None or size > 500_000_000:
            shards.append(shard)
            shard, size = {}, 0
        if name is None:
            break
        shard[name] = (torch.randn(tensors[name], generator=gen) * 0.02).to(torch.bfloat16)
        size += shard[name].numel() * 2
    weight_map = {}
    for k, part in enumerate(shards):
        fname = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(part, folder / fname, metadata={"format": "pt"})
        weight_map.update({name: fname for name in part})
        total += (folder / fname).stat().st_size
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": total},
                                                                     "weight_map": weight_map}, indent=2))
    return total


def measure(cmd: list[str], cleanup: Path | None = None) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one run of `cmd` in its own process."""
    if cleanup is not None:
        shutil.rmtree(cleanup, ignore_errors=True)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"command failed: {' '.join(cmd)}")
    return wall, usage.ru_maxrss / 1024


def summarise(label: str, runs: list[tuple[float, float]]) -> dict:
    walls, peaks = [r[0] for r in runs], [r[1] for r in runs]
    row = {"label": label, "wall_median_s": statistics.median(walls), "wall_min_s": min(walls),
           "wall_max_s": max(walls), "peak_rss_median_mib": statistics.median(peaks)}
    print(f"{label:<34} wall median {row['wall_median_s']:8.3f} s (min {row['wall_min_s']:.3f}, "
          f"max {row['wall_max_s']:.3f})   peak RSS {row['peak_rss_median_mib']:8.1f} MiB")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--build-only", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build_only:
        total = build_checkpoint(args.build_only)
        print(f"built {args.build_only}: {total / 1e9:.2f} GB in {len(list(args.build_only.glob('*.safetensors')))} shards")
        return
    work = args.workdir or Path(tempfile.mkdtemp(prefix="ropeconv-bench-"))
    src = work / "synthetic-llama"
    py = sys.executable
    if not (src / "config.json").exists():
        # built in a child so this process stays small: a forked child's peak RSS starts at its parent's
        subprocess.run([py, __file__, "--build-only", str(src)], check=True)
    out_a, out_b = work / "out-ropeconv", work / "out-transformers"
    rows = [
        summarise("A ropeconv extend (yarn x4)", [measure([py, "-m", "ropeconv", "extend", str(src), "-m", "yarn",
                                                           "-f", "4", "-o", str(out_a)], cleanup=out_a)
                                                  for _ in range(args.runs)]),
        summarise("B transformers load/edit/save", [measure([py, "-c", HAND_SCRIPT, str(src), str(out_b)], cleanup=out_b)
                                                    for _ in range(max(1, args.runs - 1))]),
        summarise("C ropeconv --help", [measure([py, "-m", "ropeconv", "--help"]) for _ in range(args.runs + 2)]),
        summarise("C' python -c 'import torch'", [measure([py, "-c", "import torch"]) for _ in range(args.runs + 2)]),
    ]
    in_process = float(subprocess.run([py, "-c", IN_PROCESS, str(src), str(out_a), str(args.runs)], check=True,
                                      capture_output=True, text=True).stdout)
    print(f"{'D api.extend in-process (median)':<34} wall median {in_process:8.4f} s")
    rows.append({"label": "D api.extend in-process", "wall_median_s": in_process})
    a, b = rows[0], rows[1]
    print(f"\nextend speed-up, whole process: {b['wall_median_s'] / a['wall_median_s']:.0f}x; "
          f"in-process: {b['wall_median_s'] / in_process:.0f}x   "
          f"peak memory: {b['peak_rss_median_mib'] / a['peak_rss_median_mib']:.0f}x less")
    (work / "bench_extend.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
