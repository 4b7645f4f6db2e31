"""What a tune run leaves beside the model it writes: `tune.json` (every trial: parameters, scores,
time; the settings; the curves) and `tune.png` (the search, and perplexity by position for the
unscaled base, the method's defaults and the tuned winner). Both are written into the tune's temporary output folder before
the one rename that puts the whole output in place (ropeconv.tune.write).
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


def plot_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def write_plot(folder: Path, document: dict) -> Path | None:
    """tune.png; None (and nothing written) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig = draw(document)
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


def draw(document: dict):
    """The figure: the search (measured trials, best so far over the defaults line), a strip for the trials
    stopped before the target window, and perplexity by position; legends below the panels."""
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(13, 5.2), layout="constrained")  # room for any tick label width
    grid = fig.add_gridspec(2, 2, height_ratios=(4, 1), hspace=0.08)
    stopped = [t for t in document["trials"] if t["state"] == "pruned" and t["past_ppl"] is None]
    if stopped:  # a strip of their own under the search: they have no past-L0 perplexity to be drawn at
        search = fig.add_subplot(grid[0, 0])
        strip = fig.add_subplot(grid[1, 0], sharex=search)
    else:
        search, strip = fig.add_subplot(grid[:, 0]), None
    handles = _plot_search(search, document)
    if strip is not None:
        handles += _plot_stopped(strip, stopped, document)
        search.tick_params(labelbottom=False)
        search.set_xlabel("")  # the strip below carries the trial axis
    # the legend below the panels, never over the points
    fig.legend(handles=handles, loc="outside lower left", ncol=2, fontsize=8, frameon=False)
    _plot_curves(fig.add_subplot(grid[:, 1]), document)
    return fig


def _plot_search(ax, document: dict) -> list:
    """Measured trials at their past-L0 perplexity; the best-so-far line drawn over the defaults line."""
    from matplotlib.ticker import MaxNLocator

    done = sorted((t for t in document["trials"] if t["past_ppl"] is not None), key=lambda t: t["number"])
    handles = [ax.scatter([t["number"] for t in done], [t["past_ppl"] for t in done], s=18, color="tab:blue",
                          zorder=3, label="trial (perplexity past L0)")]
    best, best_line = None, []
    for t in done:
        if (t["short_ratio"] or 0) <= document["max_short_ratio"] and (best is None or t["past_ppl"] < best):
            best = t["past_ppl"]
        if best is not None:
            best_line.append((t["number"], best))
    default = document.get("default")
    if default and default.get("past_ppl"):
        handles.append(ax.axhline(default["past_ppl"], color="grey", linestyle="--", linewidth=1.0, zorder=1,
                                  label=f"{document['method']} defaults"))
    if best_line:
        handles += ax.step([n for n, _ in best_line], [b for _, b in best_line], where="post", color="tab:green",
                           linewidth=2.2, zorder=4, label="best so far (within the short-context bound)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.ticklabel_format(axis="y", useOffset=False)
    ax.set_xlabel("trial")
    ax.set_ylabel(f"perplexity past L0 at {document['target_context']} tokens")
    ax.set_title(f"search: {document['method']}, {len(document['trials'])} trials")
    return handles


def _plot_stopped(ax, stopped: list[dict], document: dict) -> list:
    """Trials stopped before the target window, where they stopped: no past-L0 perplexity to draw."""
    bound = [t for t in stopped if t.get("stopped") != "pruned"]
    pruned = [t for t in stopped if t.get("stopped") == "pruned"]
    handles = []
    if bound:
        handles.append(ax.scatter([t["number"] for t in bound], [1] * len(bound), marker="x", color="tab:red",
                                  label=f"stopped: short-context cost over ×{document['max_short_ratio']:g}"))
    if pruned:
        handles.append(ax.scatter([t["number"] for t in pruned], [0] * len(pruned), marker="v", color="tab:orange",
                                  label="stopped: pruned half-way to the target"))
    ax.set_yticks([0, 1], ["pruned", "bound"], fontsize=8)
    ax.set_ylim(-0.6, 1.6)
    ax.set_xlabel("trial")
    return handles


def _plot_curves(ax, document: dict) -> None:
    for label, row, style in (("base (unscaled)", document.get("base"), ":"), ("method defaults", document.get("default"), "--"),
                              ("tuned", document.get("best"), "-")):
        if row and row.get("buckets"):
            xs = [(start + end) / 2 for start, end, _ in row["buckets"]]
            ax.plot(xs, [ppl for _, _, ppl in row["buckets"]], style, marker="o", markersize=3, label=label)
    ax.axvline(document["original_context"], color="grey", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("position (tokens)")
    ax.set_ylabel("perplexity per position bucket")
    ax.set_title(f"perplexity by position, L0 = {document['original_context']}")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3, frameon=False)
