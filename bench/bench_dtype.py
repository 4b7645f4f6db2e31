"""Benchmark: the probe's measurement in float32 against bfloat16 on this machine's CPU, side by side.

`ropeconv probe --dtype auto` picks bfloat16 on CPUs that compute it natively (AVX-512 BF16 or AMX
on x86, the BF16 extension on Arm) and float32 elsewhere: on an AVX2-only CPU torch emulates bf16
matrix products by converting to float32 and back, which costs several times the float32 time.
This script measures the ratio that choice rests on, and prints what `--dtype auto` picks here.

Both dtypes of the same model (SmolLM2-135M by default) are loaded once; then the measurement
(`probe.measure.token_losses` on the same tokens of the default text) runs alternately in each dtype,
`--repeats` times, so background load on a shared machine hits both alike. Reported: the median wall
time per dtype, their ratio, and the largest difference in mean loss (nats) between the two.

    python bench/bench_dtype.py                          # SmolLM2-135M, 2,048 tokens, 3 repeats
    python bench/bench_dtype.py --length 4096 --repeats 5 --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model folder (default: the offline SmolLM2-135M folder)")
    parser.add_argument("--length", type=int, default=2048, help="tokens per measurement (default 2048)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs per dtype (default 3)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()

    import torch

    from ropeconv.probe import measure, text as texts
    from ropeconv.probe import load_tokenizer

    folder = Path(args.model) if args.model else Path(__import__("ropeconv.smollm", fromlist=["x"]).ensure_folder())
    tokenizer = load_tokenizer(folder)
    ids = texts.tokenize(tokenizer, texts.load_text(None, None, min_tokens=args.length), args.length)
    models = {name: measure.load_model(folder, "cpu", getattr(torch, name)) for name in ("float32", "bfloat16")}
    for model in models.values():  # one untimed pass each: first-call allocations and kernel selection
        measure.token_losses(model, ids[:256])
    seconds: dict[str, list[float]] = {name: [] for name in models}
    mean_nll: dict[str, float] = {}
    for _ in range(args.repeats):
        for name, model in models.items():
            started = time.perf_counter()
            losses = measure.token_losses(model, ids)
            seconds[name].append(time.perf_counter() - started)
            mean_nll[name] = float(losses.mean())
    choice = measure.cpu_dtype_choice()
    median = {name: statistics.median(values) for name, values in seconds.items()}
    report = {
        "model": str(folder), "length": len(ids), "repeats": args.repeats, "threads": torch.get_num_threads(),
        "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "seconds": seconds, "median_seconds": median,
        "bf16_over_fp32": median["bfloat16"] / median["float32"],
        "mean_nll": mean_nll, "mean_nll_difference": abs(mean_nll["bfloat16"] - mean_nll["float32"]),
        "auto_picks": {"dtype": choice.dtype, "reason": choice.reason},
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{folder.name}, {len(ids)} tokens, {report['threads']} threads, torch {torch.__version__} "
          f"({report['cpu_capability']})")
    for name in models:
        runs = ", ".join(f"{s:.1f}" for s in seconds[name])
        print(f"  {name:<9} median {median[name]:6.1f} s  (runs: {runs})  mean loss {mean_nll[name]:.4f} nats")
    print(f"  bfloat16 / float32: ×{report['bf16_over_fp32']:.2f} time; mean loss differs by "
          f"{report['mean_nll_difference']:.4f} nats")
    print(f"  --dtype auto on this CPU: {choice.dtype} ({choice.reason})")


if __name__ == "__main__":
    main()
