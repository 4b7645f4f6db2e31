"""Benchmark: `ropeconv tune` against the default methods at the same factor, on the calibration
text and on a text the search never saw.

For each target: tune (yarn by default) on the calibration text, then measure with the probe's loss
(one loaded model, rotary values swapped in place, exactly as tune measures):

  rows     — unscaled base; default yarn, ntk, dynamic, linear at s = target / L0; the tuned winner
  columns  — perplexity past L0 at the target, perplexity at --short-length (4,096) and its ratio to
             the base's, on the calibration text and on the unseen text; trials and wall time

Targets checked (on the unseen text): tuned past-L0 perplexity ≤ 0.95 × default YaRN's, and
short-context cost (ratio − 1) at most half of default YaRN's.

The calibration text is the probe's default (Python standard-library source); the unseen text is
the source of other standard-library modules (UNSEEN_MODULES), never part of the calibration.
Rows print as they finish and the JSON is rewritten after each, so an interrupted run keeps them.

    python bench/bench_tune.py                                   # full: SmolLM2-135M, targets 16k and 32k, 20 trials
    python bench/bench_tune.py --targets 12288 --budget 3 --methods yarn
    python bench/bench_tune.py --tuned DIR                        # reuse a finished tune output (its tune.json)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

UNSEEN_MODULES = ("_pydecimal", "imaplib", "smtplib", "zipfile", "turtle", "csv", "sched", "mimetypes",
                  "netrc", "plistlib", "pstats", "shlex", "string", "uuid", "wave", "webbrowser", "zipapp")
DEFAULT_METHODS = ("yarn", "ntk", "dynamic", "linear")


def unseen_text_file(folder: Path) -> Path:
    from ropeconv.probe.text import STDLIB_MODULES, _module_file

    parts = []
    for module in UNSEEN_MODULES:
        assert module not in STDLIB_MODULES
        path = _module_file(module)
        if path is not None:
            parts.append(f"# ===== {module}.py =====\n" + path.read_text(encoding="utf-8"))
    out = folder / "unseen.txt"
    out.write_text("\n".join(parts), encoding="utf-8")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder (default: SmolLM2-135M via ropeconv.smollm)")
    parser.add_argument("--targets", default="16384,32768")
    parser.add_argument("--method", default="yarn")
    parser.add_argument("--budget", type=int, default=20)
    parser.add_argument("--short-length", type=int, default=4096)
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS), help="default methods to compare")
    parser.add_argument("--tuned", default=None, help="a finished tune output folder to reuse (one target)")
    parser.add_argument("--work", default="bench-tune-work")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--json", default=None, help="write the figures here (rewritten after every row)")
    args = parser.parse_args()

    from ropeconv import smollm
    from ropeconv.probe import load_tokenizer, measure, text as texts
    from ropeconv.folder import read_config
    from ropeconv.spec import read_spec
    from ropeconv.tune import TuneSettings, run_tune
    from ropeconv.tune.objective import Evaluator
    from ropeconv.tune.space import Candidate

    model = Path(args.model) if args.model else smollm.ensure_folder()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    basis = read_spec(read_config(model)).basis()
    L0 = basis.original_context
    device = measure.pick_device("auto")
    choice = measure.dtype_choice(device, args.dtype)
    texts_by_name = {"calibration": texts.load_text(None, None), "unseen": texts.load_text(unseen_text_file(work))}
    tokenizer = load_tokenizer(model)
    figures: dict = {"model": str(model), "L0": L0, "device": device, "dtype": choice.dtype,
                     "short_length": args.short_length, "targets": []}

    def save() -> None:
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")

    for target in [int(t) for t in args.targets.split(",")]:
        entry: dict = {"target": target, "rows": []}
        figures["targets"].append(entry)
        t0 = time.perf_counter()
        if args.tuned:
            tuned = json.loads((Path(args.tuned) / "tune.json").read_text())
            assert tuned["target_context"] == target, "--tuned output was tuned for another target"
        else:
            settings = TuneSettings(target_context=target, method=args.method, budget=args.budget,
                                    short_length=args.short_length, dtype=args.dtype,
                                    storage=f"sqlite:///{(work / f'study-{target}.db').absolute()}")
            tuned = run_tune(model, settings, output=work / f"tuned-{target}", force=True,
                             note=lambda line: print(f"  {line}", file=sys.stderr, flush=True),
                             progress=lambda p: print(f"  {p.label} · best {p.best_ppl} · eta {p.eta and round(p.eta)} s",
                                                      file=sys.stderr, flush=True))
        entry["tune"] = {"trials": len(tuned["trials"]), "search_seconds": tuned["search_seconds"],
                         "wall_seconds": round(time.perf_counter() - t0, 1) if not args.tuned else tuned.get("seconds"),
                         "winner": tuned["best"]["candidate"]}
        print(f"target {target}: {len(tuned['trials'])} trials, search {tuned['search_seconds']:.0f} s", flush=True)
        winner = tuned["best"]["candidate"]
        s = target / L0
        rows = [("base", None)] + [(m, Candidate(m, target, L0)) for m in args.methods.split(",") if m] + [
            ("tuned", Candidate(winner["method"], winner["served_context"], L0, winner["params"]))]
        loaded = measure.load_model(model, device, measure.pick_dtype(device, choice.dtype))
        for text_name, text in texts_by_name.items():
            ids = texts.tokenize(tokenizer, text, target)
            evaluator = Evaluator(loaded, ids, basis, args.short_length, buckets=8)
            base_short = evaluator.base_short
            for label, candidate in rows:
                started = time.perf_counter()
                if candidate is None:
                    long = evaluator.unscaled(target)
                    short_ppl, ratio = base_short.ppl, 1.0
                else:
                    result = evaluator.measure(candidate)
                    long, short_ppl, ratio = result.long, result.short.ppl, result.short_ratio
                row = {"text": text_name, "row": label, "factor": s if candidate is None else candidate.factor,
                       "past_ppl": long.ppl_beyond, "short_ppl": short_ppl, "short_ratio": ratio,
                       "seconds": round(time.perf_counter() - started, 1),
                       "tokens_per_second": round((target + (0 if candidate is None else args.short_length))
                                                  / (time.perf_counter() - started), 1)}
                entry["rows"].append(row)
                print(f"  {text_name:11} {label:8} past-L0 ppl {long.ppl_beyond:9.4f}  ppl@{args.short_length} "
                      f"{short_ppl:8.4f} (×{ratio:.4f})  {row['seconds']:.0f} s", flush=True)
                save()
            evaluator.close()
        loaded = None
        by = {(r["text"], r["row"]): r for r in entry["rows"]}
        if ("unseen", "yarn") in by and ("unseen", "tuned") in by:
            yarn, tuned_row = by[("unseen", "yarn")], by[("unseen", "tuned")]
            entry["targets_met"] = {
                "past_ppl_vs_yarn": tuned_row["past_ppl"] / yarn["past_ppl"],
                "past_ppl_target_0.95": tuned_row["past_ppl"] <= 0.95 * yarn["past_ppl"],
                "short_cost_vs_yarn": ((tuned_row["short_ratio"] - 1) / (yarn["short_ratio"] - 1)
                                       if yarn["short_ratio"] > 1 else None),
                "short_cost_target_half": tuned_row["short_ratio"] - 1 <= 0.5 * (yarn["short_ratio"] - 1),
            }
            print(f"  targets on unseen text: {entry['targets_met']}", flush=True)
        save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
