"""Benchmark: start-up of `--help`, `inspect` and `extend` (the commands that must stay light),
optionally side by side with another checkout of ropeconv (e.g. before a refactor).

    python bench/bench_startup.py [--against OTHER_CHECKOUT] [--runs 7]

Each command runs as its own process (`python -m ropeconv …` with PYTHONPATH set to the tree), the
trees alternating run by run so machine drift hits both alike; the figures are wall-time medians
and the per-pair ratio's median. It also reports whether torch or transformers got imported
(they must not be, on these paths).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
CONFIG = {"model_type": "llama", "hidden_size": 2048, "num_attention_heads": 32, "num_hidden_layers": 22,
          "max_position_embeddings": 4096, "rope_theta": 10000.0, "torch_dtype": "bfloat16"}
PROBE = ("import runpy, sys; sys.argv = ['ropeconv'] + sys.argv[1:];\n"
         "try:\n    runpy.run_module('ropeconv', run_name='__main__')\nexcept SystemExit:\n    pass\n"
         "print('HEAVY', sorted(m for m in ('torch', 'transformers') if m in sys.modules), file=sys.stderr)")


def run_once(tree: Path, args: list[str], cwd: Path) -> tuple[float, list[str]]:
    env = dict(os.environ, PYTHONPATH=str(tree), HF_HUB_OFFLINE="1")
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: modules load from bytecode, not recompiled each run
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    heavy = next((line for line in proc.stderr.splitlines() if line.startswith("HEAVY ")), "HEAVY ['?']")
    return elapsed, ast.literal_eval(heavy[len("HEAVY "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", type=Path, help="another ropeconv checkout to compare with")
    parser.add_argument("--runs", type=int, default=7)
    opts = parser.parse_args()
    trees = [("this", HERE)] + ([("against", opts.against.resolve())] if opts.against else [])
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "model").mkdir()
        (work / "model" / "config.json").write_text(json.dumps(CONFIG))
        commands = {"--help": ["--help"], "inspect": ["inspect", "model"],
                    "extend": ["extend", "model", "-m", "yarn", "-f", "4", "-o", "out", "--force"]}
        rows = []
        for label, args in commands.items():
            times: dict[str, list[float]] = {name: [] for name, _ in trees}
            heavy: dict[str, list[str]] = {}
            for _ in range(opts.runs + 1):  # the first round warms the file cache and is dropped
                for name, tree in trees:
                    elapsed, imported = run_once(tree, args, work)
                    times[name].append(elapsed)
                    heavy[name] = imported
            row = {"command": label, **{f"{name}_median_s": round(statistics.median(t[1:]), 4) for name, t in times.items()},
                   **{f"{name}_heavy_imports": heavy[name] for name in heavy}}
            if opts.against:
                ratios = [a / b for a, b in zip(times["this"][1:], times["against"][1:])]
                row["ratio_this_over_against_median"] = round(statistics.median(ratios), 3)
            rows.append(row)
            print(json.dumps(row))


if __name__ == "__main__":
    main()
