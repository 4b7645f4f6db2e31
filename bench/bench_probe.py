"""Benchmark: the probe's chunked loss against a plain `model(input_ids, labels=input_ids)` call.

Each variant runs in its own subprocess (so one's memory does not hide in the other's peak), on the
same model, the same tokens, the same device and dtype:

  plain  — model(input_ids, labels=input_ids): full-vocabulary logits for the whole window
  probe  — ropeconv.probe.measure.token_losses: decoder hidden states, then LM head + cross-entropy
           on chunks of 1024 positions in float32

Reported per variant: wall time of the measurement itself (time.perf_counter, model already
loaded), resident memory after loading (≈ the weights + runtime), and the peak resident memory
during the measurement (Linux: VmHWM after resetting it through /proc/self/clear_refs; elsewhere a
psutil sampling thread). "above weights" = peak during the measurement − resident after loading.

    python bench/bench_probe.py                      # SmolLM2-135M, 16,384 tokens, CPU, --dtype auto
    python bench/bench_probe.py --length 8192 --json

`--engines`: the whole probe (`run_probe`: load, warm-up, one window) of SmolLM2 extended yarn ×4 in
llama.cpp (the packaged Q4_1 GGUF, `ropeconv probe FILE.gguf`) and in transformers (the folder unpacked
from it, --dtype auto), each in its own subprocess, one run each; needs the `llamacpp` extra.

    python bench/bench_probe.py --engines --length 16384
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

VARIANTS = ("plain", "probe")


def rss_bytes() -> int:
    """Resident memory now: /proc on Linux, psutil elsewhere (only the benchmark needs it)."""
    try:
        return _status_field("VmRSS:")
    except OSError:
        import psutil

        return psutil.Process().memory_info().rss


def _status_field(name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(name):
                return int(line.split()[1]) * 1024
    return 0


class PeakRss:
    """Peak resident memory over a block of code."""

    def __enter__(self):
        self.linux = _reset_high_water_mark()
        self.peak = rss_bytes()
        self._stop = threading.Event()
        if not self.linux:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss_bytes())

    def __exit__(self, *exc):
        self._stop.set()
        if self.linux:
            self.peak = _high_water_mark()
        else:
            self._thread.join()
        return False


def _reset_high_water_mark() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux ≥ 4.0)
        return _high_water_mark() > 0
    except OSError:
        return False


def _high_water_mark() -> int:
    return _status_field("VmHWM:")


def child(variant: str, model_dir: str, length: int, device: str, dtype: str, chunk: int) -> dict:
    import torch
    from transformers import AutoTokenizer

    from ropeconv.probe import measure, text as texts

    torch.manual_seed(0)
    device = measure.pick_device(device)
    torch_dtype = measure.pick_dtype(device, dtype)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    ids = texts.tokenize(tokenizer, texts.stdlib_text(), length)
    model = measure.load_model(Path(model_dir), device, torch_dtype)
    measure.release_memory(device)
    loaded = rss_bytes()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base_gpu = torch.cuda.memory_allocated()
    with PeakRss() as peak:
        start = time.perf_counter()
        if variant == "plain":
            with torch.inference_mode():
                input_ids = torch.tensor([ids], device=measure.model_device(model))
                loss = model(input_ids, labels=input_ids, use_cache=False).loss.item()
        else:
            loss = measure.token_losses(model, ids, chunk=chunk).mean().item()
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    out = {"variant": variant, "seconds": seconds, "loss": loss, "rss_loaded": loaded, "rss_peak": peak.peak,
           "above_weights": peak.peak - loaded, "tokens": len(ids), "device": device,
           "dtype": str(torch_dtype).replace("torch.", ""), "threads": torch.get_num_threads()}
    if device == "cuda":
        out["gpu_peak_above_weights"] = torch.cuda.max_memory_allocated() - base_gpu
    return out


ENGINES = ("llama.cpp", "transformers")


def engine_child(engine: str, model: str, length: int) -> dict:
    from ropeconv.probe import run_probe

    result = run_probe(model, lengths=[length], save=False, progress=False)
    run = result["results"][0]["model"]
    return {"engine": result["engine"], "seconds": result["seconds"], "window_seconds": run["seconds"],
            "ppl": run["ppl"], "ppl_beyond": run["ppl_beyond"], "dtype": result["dtype"],
            "estimated_seconds": result["estimate"]["seconds"], "tokens_sha256": result["text"]["tokens_sha256"]}


def run_engines(args) -> dict:
    """Both engines' probe of SmolLM2 yarn ×4 at args.length, written to a temporary folder."""
    import tempfile

    from ropeconv import api
    from ropeconv.smollm import ensure_folder, gguf_path

    with tempfile.TemporaryDirectory() as tmp:
        models = {"llama.cpp": str(Path(tmp) / "smol-yarn-x4.gguf"), "transformers": str(Path(tmp) / "smol-yarn-x4")}
        api.extend(str(gguf_path()), "yarn", factor=4, output=models["llama.cpp"])
        api.extend(str(ensure_folder()), "yarn", factor=4, output=models["transformers"])
        results = {}
        for engine in ENGINES:
            cmd = [sys.executable, __file__, "--engine-child", engine, "--model", models[engine],
                   "--length", str(args.length)]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                sys.stderr.write(done.stderr)
                raise SystemExit(f"{engine} failed (exit {done.returncode})")
            results[engine] = json.loads(done.stdout.strip().splitlines()[-1])
    return {"length": args.length, "cpu_count": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count(), "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
            "results": results, "time_ratio": results["llama.cpp"]["seconds"] / results["transformers"]["seconds"]}


def run_variant(variant: str, args) -> dict:
    cmd = [sys.executable, __file__, "--child", variant, "--model", args.model, "--length", str(args.length),
           "--device", args.device, "--dtype", args.dtype, "--chunk", str(args.chunk)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"{variant} failed (exit {done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder (default: the SmolLM2 demo model)")
    parser.add_argument("--length", type=int, default=16384)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--chunk", type=int, default=1024)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--engines", action="store_true", help="the whole probe in llama.cpp vs transformers")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--engine-child", choices=ENGINES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.engine_child:
        print(json.dumps(engine_child(args.engine_child, args.model, args.length)))
        return
    if args.engines:
        print(json.dumps(run_engines(args), indent=2))
        return
    if args.child:
        print(json.dumps(child(args.child, args.model, args.length, args.device, args.dtype, args.chunk)))
        return
    if not args.model:
        from ropeconv.smollm import ensure_folder

        args.model = str(ensure_folder())
    results = {variant: run_variant(variant, args) for variant in VARIANTS}
    plain, probe = results["plain"], results["probe"]
    summary = {
        "model": args.model, "length": args.length, "chunk": args.chunk, "cpu_count": os.cpu_count(),
        "results": results,
        "time_ratio": probe["seconds"] / plain["seconds"],
        "memory_ratio": probe["above_weights"] / plain["above_weights"] if plain["above_weights"] > 0 else None,
        "loss_difference": abs(probe["loss"] - plain["loss"]),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    mib = 1 / (1 << 20)
    print(f"{Path(args.model).name}, {args.length} tokens, {plain['device']} {plain['dtype']}, "
          f"{plain['threads']} threads")
    print(f"{'variant':8} {'seconds':>9} {'RSS loaded':>12} {'peak':>10} {'above weights':>14} {'loss':>9}")
    for r in results.values():
        print(f"{r['variant']:8} {r['seconds']:9.1f} {r['rss_loaded'] * mib:10.0f} MiB {r['rss_peak'] * mib:6.0f} MiB"
              f" {r['above_weights'] * mib:10.0f} MiB {r['loss']:9.5f}")
    print(f"time probe/plain: {summary['time_ratio']:.3f} (target ≤ 1.1); memory above weights probe/plain: "
          f"{summary['memory_ratio']:.3f} (target ≤ 0.25); |Δloss| {summary['loss_difference']:.2e}")


if __name__ == "__main__":
    main()
