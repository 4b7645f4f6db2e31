"""What a tune run leaves beside the model it writes: `tune.json` (every trial: parameters, scores,
time; the settings; the curves) and `tune.png` (the search, and perplexity by position for the
unscaled base, the method's defaults and the tuned winner). Both are written atomically
(temporary name, then rename) into the output folder, after `extend` has put it in place.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from ropeconv.errors import RopeconvError
from ropeconv.output import write_json_atomic

RESULT_NAME = "tune.json"
PLOT_NAME = "tune.png"


def write_result(folder: Path, document: dict) -> Path:
    path = Path(folder) / RESULT_NAME
    write_json_atomic(path, document)
    return path


def write_plot(folder: Path, document: dict) -> Path | None:
    """tune.png; None (and nothing written) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    trials = document["trials"]
    L0, target = document["original_context"], document["target_context"]
    fig, (search, curve) = plt.subplots(1, 2, figsize=(12, 4.5))
    done = [t for t in trials if t["past_ppl"] is not None]
    stopped = [t for t in trials if t["state"] == "pruned"]
    search.scatter([t["number"] for t in done], [t["past_ppl"] for t in done], s=18, color="tab:blue",
                   label="trial (past-L0 perplexity)")
    best, best_line = None, []
    for t in sorted(done, key=lambda t: t["number"]):
        if (t["short_ratio"] or 0) <= document["max_short_ratio"] and (best is None or t["past_ppl"] < best):
            best = t["past_ppl"]
        best_line.append((t["number"], best))
    if best_line:
        search.step([n for n, _ in best_line], [b for _, b in best_line], where="post", color="tab:green", label="best so far")
    if stopped:
        search.scatter([t["number"] for t in stopped], [best or 1.0] * len(stopped), marker="x", color="tab:red",
                       label="stopped early (short-context bound or pruned)")
    default = document.get("default")
    if default and default.get("past_ppl"):
        search.axhline(default["past_ppl"], color="grey", linestyle="--", label=f"{document['method']} defaults")
    from matplotlib.ticker import MaxNLocator

    search.xaxis.set_major_locator(MaxNLocator(integer=True))
    search.ticklabel_format(axis="y", useOffset=False)
    search.set_xlabel("trial")
    search.set_ylabel(f"perplexity past L0 at {target} tokens")
    search.set_title(f"search: {document['method']}, {len(trials)} trials")
    search.legend(fontsize=8)
    for label, row, style in (("base (unscaled)", document.get("base"), ":"), ("method defaults", default, "--"),
                              ("tuned", document.get("best"), "-")):
        if row and row.get("buckets"):
            xs = [(start + end) / 2 for start, end, _ in row["buckets"]]
            curve.plot(xs, [ppl for _, _, ppl in row["buckets"]], style, marker="o", markersize=3, label=label)
    curve.axvline(L0, color="grey", linewidth=0.8)
    curve.set_yscale("log")
    curve.set_xlabel("position (tokens)")
    curve.set_ylabel("perplexity per position bucket")
    curve.set_title(f"perplexity by position, L0 = {L0}")
    curve.legend(fontsize=8)
    fig.tight_layout()
    path = Path(folder) / PLOT_NAME
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp.png")
    try:
        fig.savefig(tmp, dpi=100)
        os.replace(tmp, path)
    except OSError as exc:
        raise RopeconvError(f"cannot write {path}: {exc.strerror or exc}", "check the output folder") from None
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return path
