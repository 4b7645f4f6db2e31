"""Pictures of a RoPE scaling: per dimension pair, its wavelength and the scale each method applies.

`plot_png` draws with matplotlib (the optional `plot` extra; `inspect --plot` without it is an
error, exit 2); `terminal_chart` is a compact text version for library use. The scale of pair j is b_j / inv_j: 1 where a method keeps
the frequency, the factor where it interpolates fully. L0 and the target context L0·s are marked.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ropeconv.errors import RopeconvError
from ropeconv.methods import Basis, base_inv_freq, compute, wavelengths, validate_params

COMPARE = ("linear", "ntk", "yarn", "llama3")  # drawn side by side when no method is named
DEFAULT_FACTOR = 4.0  # illustrative factor for an unscaled model with no --factor
BLOCKS = " ▏▎▍▌▋▊▉█"


def _basis(spec: Any) -> Basis:
    """A Basis from a RopeSpec or the dict `RopeSpec.to_dict()` / `inspect` gives."""
    if isinstance(spec, dict):
        return Basis(float(spec["rope_theta"]), int(spec["rotary_dim"]), int(spec["original_context"]))
    return spec.basis()


def method_scales(spec: Any, methods: list[str] | tuple[str, ...], factor: float,
                  params: dict[str, dict] | None = None) -> dict[str, list[float]]:
    """Per method, the scale b_j / inv_j of every dimension pair at `factor` (dynamic at L0·factor)."""
    basis = _basis(spec)
    base = base_inv_freq(basis.theta, basis.dim)
    out: dict[str, list[float]] = {}
    for method in methods:
        given = (params or {}).get(method) or {}
        if method == "longrope" and ("long_factor" not in given or "short_factor" not in given):
            continue  # needs searched factor lists
        p = {"factor": float(factor), **validate_params(method, given)}  # the registry's defaults filled in
        seq_len = int(basis.original_context * factor) if method in ("dynamic", "longrope") else None
        inv, _ = compute(method, basis, p, seq_len)
        out[method] = [b / i for b, i in zip(base, inv)]
    return out


def _bar(scale: float, factor: float, width: int = 8) -> str:
    """A horizontal bar: empty at scale 1, full at `factor` (log scale)."""
    if factor <= 1 or scale <= 1:
        frac = 0.0
    else:
        frac = min(1.0, math.log(scale) / math.log(factor))
    eighths = int(round(frac * width * 8))
    full, rest = divmod(eighths, 8)
    return ("█" * full + (BLOCKS[rest] if rest else "")).ljust(width)


def terminal_chart(spec: Any, methods: list[str] | tuple[str, ...], factor: float, *,
                   scales: dict[str, list[float]] | None = None, rows: int = 16) -> str:
    """A compact text chart: sampled dimension pairs, wavelength, and a bar per method."""
    basis = _basis(spec)
    base = base_inv_freq(basis.theta, basis.dim)
    waves = wavelengths(base)
    scales = scales if scales is not None else method_scales(spec, methods, factor)
    names = list(scales)
    L0, target = basis.original_context, int(basis.original_context * factor)
    n = len(base)
    step = max(1, math.ceil(n / rows))
    picked = list(range(0, n, step))
    if picked[-1] != n - 1:
        picked.append(n - 1)
    lines = [f"scale per dimension pair (θ {basis.theta:g}, {basis.dim} rotary dims, L0 {L0}, "
             f"target {target} = ×{factor:g}; bar: 1 → ×{factor:g}, log scale)"]
    header = f"{'pair':>4} {'wavelength':>11}  " + "  ".join(f"{m[:13]:<13}" for m in names)
    lines.append(header)
    marks = [(L0, "L0"), (target, "target")]
    for j in picked:
        for limit, label in list(marks):
            if waves[j] >= limit:
                lines.append(f"{'':>4} {'':>11}  ── wavelength ≥ {label} ({limit}) below ──")
                marks.remove((limit, label))
        cells = "  ".join(f"{_bar(scales[m][j], factor)} {scales[m][j]:>4.3g}" for m in names)
        lines.append(f"{j:>4} {waves[j]:>11.4g}  {cells}")
    return "\n".join(lines)


def _matplotlib():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise RopeconvError("--plot draws a PNG with matplotlib, which is not installed",
                            "pip install 'ropeconv[plot]', or leave out --plot") from None
    return plt


def scale_ticks(highest: float) -> list[float]:
    """Ticks for the log-scale axis of scales: 1, 2, 4, … up to the first at or above `highest`."""
    ticks = [1.0]
    while ticks[-1] < highest * (1 - 1e-9):
        ticks.append(ticks[-1] * 2)
    return ticks


def figure(spec: Any, methods: list[str] | tuple[str, ...], factor: float, *,
           scales: dict[str, list[float]] | None = None):
    """The matplotlib figure of `plot_png` (wavelength above, per-method scale below)."""
    plt = _matplotlib()
    from matplotlib.ticker import FuncFormatter, NullFormatter

    basis = _basis(spec)
    base = base_inv_freq(basis.theta, basis.dim)
    waves = wavelengths(base)
    scales = scales if scales is not None else method_scales(spec, methods, factor)
    L0, target = basis.original_context, basis.original_context * factor
    pairs = list(range(len(base)))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    top.plot(pairs, waves, color="black", label="wavelength 2π/b_j")
    top.axhline(L0, color="tab:blue", linestyle="--", label=f"L0 = {L0}")
    top.axhline(target, color="tab:red", linestyle="--", label=f"target = {int(target)}")
    top.set_yscale("log")
    top.set_ylabel("wavelength (tokens)")
    top.set_title(f"RoPE θ {basis.theta:g}, {basis.dim} rotary dims, ×{factor:g}")
    top.legend(loc="upper left")
    for method, values in scales.items():
        bottom.plot(pairs, values, label=method, linewidth=2 if method == next(iter(scales)) else 1.2)
    bottom.axhline(1, color="grey", linewidth=0.8)
    bottom.axhline(factor, color="tab:red", linestyle=":", label=f"factor {factor:g}")
    for j, w in enumerate(waves):  # where the wavelength crosses L0 and the target
        if j and waves[j - 1] < L0 <= w:
            bottom.axvline(j, color="tab:blue", linestyle="--", linewidth=0.8)
        if j and waves[j - 1] < target <= w:
            bottom.axvline(j, color="tab:red", linestyle="--", linewidth=0.8)
    bottom.set_yscale("log")
    # Plain numbers (1, 2, 4, …) on the scale axis: matplotlib's log labels read "4×10⁰" there.
    highest = max([factor] + [max(v) for v in scales.values() if v])
    bottom.set_yticks(scale_ticks(highest))
    bottom.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    bottom.yaxis.set_minor_formatter(NullFormatter())
    bottom.set_xlabel("dimension pair j")
    bottom.set_ylabel("scale b_j / inv_freq_j")
    bottom.legend(loc="upper left")
    fig.tight_layout()
    return fig


def plot_png(spec: Any, methods: list[str] | tuple[str, ...], factor: float, path: str | Path, *,
             scales: dict[str, list[float]] | None = None) -> Path:
    """Draw wavelength and per-method scale per dimension pair to a PNG. Needs matplotlib."""
    plt = _matplotlib()
    fig = figure(spec, methods, factor, scales=scales)
    path = Path(path)
    try:
        fig.savefig(path, dpi=110)
    except OSError as exc:
        raise RopeconvError(f"cannot write {path}: {exc.strerror or exc}", "choose another --plot path") from None
    finally:
        plt.close(fig)
    return path


def plot_from_inspect(result: dict, path: str | Path) -> str:
    """`inspect --plot`: the PNG, or a RopeconvError (exit 2) when matplotlib is missing — never exit 0
    without the file. Returns the line to print."""
    spec = result["spec"]
    conversion = result.get("conversion")
    scales: dict[str, list[float]] = {}
    if conversion:
        factor = float(conversion["factor"])
        first = conversion["method"]
        scales[first] = [d["new_scale"] for d in result["dimensions"]]
    else:
        factor = float(spec["scaling"].get("factor") or 0) if spec.get("scaling") else 0.0
        factor = factor if factor > 1 else DEFAULT_FACTOR
        first = None
        if spec["rope_type"] != "default":
            scales[f"current ({spec['rope_type']})"] = [d["current_scale"] for d in result["dimensions"]]
    others = [m for m in COMPARE if m != first]
    scales.update(method_scales(spec, others, factor))
    written = plot_png(spec, list(scales), factor, path, scales=scales)
    return f"wrote {written}"
