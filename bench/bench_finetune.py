"""Benchmark: `ropeconv finetune` (PoSE) on SmolLM2-135M-Instruct (trained 8,192) → 32,768 with YaRN ×4.

Rows (all on the probe's held-out text, which the default training corpus leaves out):
  unscaled         — the model as published
  training-free    — YaRN ×4 as `ropeconv extend` writes it
  fine-tuned       — PoSE training (window --window, 2 chunks, position skips up to the target)
  control          — the same training (same data, same steps, same seed) without position skips
Columns: perplexity past L0 at --eval-length (default 32,768), perplexity at 4,096, passkey
accuracy at --eval-length (unscaled, training-free and fine-tuned), training tokens/s.

Targets: fine-tuned past-L0 ppl ≤ 0.90 × training-free's and ≤ 0.95 × the control's; 4k ppl ≤ 1.02 ×
unscaled. --minutes is the whole training budget, split evenly between the PoSE run (by time) and
the control (the same number of steps).

    python bench/bench_finetune.py                                   # full: 60 minutes of training
    python bench/bench_finetune.py --minutes 2 --eval-length 12288   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

SHORT = 4096


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=60.0, help="training budget, both runs together")
    p.add_argument("--eval-length", type=int, default=32768)
    p.add_argument("--target", type=int, default=32768)
    p.add_argument("--window", type=int, default=2048)
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--lora", type=int, default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--work", type=Path, default=Path("/tmp/bench-finetune"))
    p.add_argument("--json", type=Path, default=Path("bench/finetune-smollm2-yarn-32k.json"))
    p.add_argument("--skip-control", action="store_true")
    return p.parse_args()


def train(model: Path, out: Path, args, *, skips: bool, steps: int | None, minutes: float | None) -> dict:
    import shutil

    from ropeconv.finetune import FinetuneSettings, run_finetune

    shutil.rmtree(out, ignore_errors=True)
    settings = FinetuneSettings(output=out, method="yarn", target_context=args.target, window=args.window,
                                lr=args.lr, lora=args.lora, skips=skips, steps=steps,
                                time_limit=f"{minutes * 60:.0f}s" if minutes else None, save_every=10**6,
                                eval_length=args.eval_length, device=args.device, force=True)
    started = time.monotonic()
    result = run_finetune(str(model), settings, report=lambda p: print(
        f"  step {p.step}, loss {p.loss}, {p.tokens_per_second:.0f} tok/s", file=sys.stderr) if p.step % 10 == 0 else None)
    result["wall_seconds"] = time.monotonic() - started
    return result


def short_ppl(folder: Path, device: str, L0: int) -> float:
    from ropeconv.finetune.evaluate import eval_text, measure_folder
    from ropeconv.probe import load_tokenizer
    from ropeconv.probe.measure import pick_dtype

    text = eval_text(load_tokenizer(folder), None, SHORT, L0)
    return measure_folder(folder, text, device, pick_dtype(device))["ppl"]


def passkey(folder: Path, device: str, length: int) -> float:
    from ropeconv.probe import load_tokenizer
    from ropeconv.probe.measure import load_model, pick_dtype
    from ropeconv.probe.passkey import run_passkey

    model = load_model(folder, device, pick_dtype(device))
    return run_passkey(model, load_tokenizer(folder), [length])["accuracy"]


def main() -> int:
    args = parse()
    from ropeconv.probe.measure import pick_device
    from ropeconv.smollm import ensure_folder  # the offline demo model

    device = pick_device(args.device)
    model = Path(ensure_folder())
    args.work.mkdir(parents=True, exist_ok=True)
    print(f"PoSE run: {args.minutes / (1 if args.skip_control else 2):.1f} min on {device}", file=sys.stderr)
    pose = train(model, args.work / "pose", args, skips=True, steps=None,
                 minutes=args.minutes / (1 if args.skip_control else 2))
    steps = pose["train"]["steps"]
    control = None if args.skip_control else train(model, args.work / "control", args, skips=False, steps=steps,
                                                     minutes=None)
    before, L0 = pose["eval"]["before"], pose["original_context"]
    rows = {"unscaled": before["unscaled"], "training-free": before["training_free"], "fine-tuned": pose["eval"]["after"],
            "control": control["eval"]["after"] if control else None}
    folders = {"unscaled": model, "training-free": None, "fine-tuned": args.work / "pose",
               "control": args.work / "control" if control else None}
    if folders["training-free"] is None:  # the staged extension is gone with the staging folder: write it again
        from ropeconv import api

        api.extend(str(model), "yarn", target_context=args.target, output=args.work / "yarn", force=True)
        folders["training-free"] = args.work / "yarn"
    report = {"device": device, "minutes": args.minutes, "eval_length": args.eval_length, "target": args.target,
              "window": args.window, "steps": steps, "train_tokens_per_second": pose["train"]["tokens_per_second"],
              "rows": {}}
    for name, summary in rows.items():
        if summary is None:
            continue
        row = {"ppl_past_L0": summary["ppl_beyond"], "ppl": summary["ppl"], "ppl_4k": short_ppl(folders[name], device, L0)}
        if name != "control":
            row["passkey"] = passkey(folders[name], device, args.eval_length)
        report["rows"][name] = row
        print(f"{name:>14}: {json.dumps(row)}", file=sys.stderr)
    r = report["rows"]
    report["targets"] = {
        "past_L0_vs_training_free": r["fine-tuned"]["ppl_past_L0"] / r["training-free"]["ppl_past_L0"],
        "past_L0_vs_control": (r["fine-tuned"]["ppl_past_L0"] / r["control"]["ppl_past_L0"]) if "control" in r else None,
        "ppl_4k_vs_unscaled": r["fine-tuned"]["ppl_4k"] / r["unscaled"]["ppl_4k"]}
    report["targets_met"] = {"past_L0_vs_training_free ≤ 0.90": report["targets"]["past_L0_vs_training_free"] <= 0.90,
                             "past_L0_vs_control ≤ 0.95": (report["targets"]["past_L0_vs_control"] or 9) <= 0.95,
                             "ppl_4k_vs_unscaled ≤ 1.02": report["targets"]["ppl_4k_vs_unscaled"] <= 1.02}
    args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
