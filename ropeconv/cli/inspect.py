"""`ropeconv inspect`: explain a model's RoPE setup (never imports torch or transformers)."""

from __future__ import annotations

from pathlib import Path

import typer

from ropeconv.cli.common import DEBUG_OPTION, JSON_OPTION, console, escape_text, one_line, print_labelled, run, unique
from ropeconv.cli.params import MethodOptions, with_method_options


def register(app: typer.Typer) -> None:
    app.command("inspect", help="Explain a model's RoPE setup; with --method/--factor, what a conversion would do.",
                no_args_is_help=True)(inspect_command)


@with_method_options
def inspect_command(
    model: str = typer.Argument(..., help="Model folder, Hub repo id (org/name\\[@revision]) or .gguf file."),
    method: str = typer.Option(None, "--method", "-m", help="Show what this method would do per dimension."),
    factor: str = typer.Option(None, "--factor", "-f", help="Scale factor for --method."),
    target_context: str = typer.Option(None, "--target-context", help="Target context for --method (instead of --factor)."),
    original_context: int = typer.Option(None, "--original-context", help="Override L0, the trained context."),
    plot: Path = typer.Option(None, "--plot", help="Draw wavelength and per-dimension scale to this PNG (needs matplotlib)."),
    as_json: bool = JSON_OPTION,
    debug: bool = DEBUG_OPTION,
    method_opts: MethodOptions = None,
) -> None:
    def body() -> dict:
        from ropeconv import api

        if method and factor is None and target_context is None:
            from ropeconv.errors import RopeconvError

            raise RopeconvError("--method needs --factor or --target-context", "e.g. --method yarn --factor 4")
        result = api.inspect(model, method=method, factor=factor, target_context=target_context,
                             original_context=original_context, params=method_opts.to_params())
        if plot is not None:
            result["plot"] = _plot(result, plot)
        return result

    run(body, as_json=as_json, debug=debug, render=render_inspect)


def _plot(result: dict, path: Path) -> str:
    from ropeconv import plot as plotting

    return plotting.plot_from_inspect(result, path)


# what `config shape` means, in words (ropeconv.spec._shape)
CONFIG_SHAPES = {"v5": "v5 (rope_parameters, as transformers ≥ 5 saves it)",
                 "legacy": "legacy (rope_theta / rope_scaling, as transformers 4.x reads it)",
                 "both": "both (the v5 rope_parameters and the legacy rope_theta / rope_scaling keys)",
                 "none": "none (no RoPE keys: class defaults)",
                 "gguf": "GGUF metadata (the architecture's context_length and rope.* keys)"}


def _context_key(spec: dict) -> str:
    """The key the advertised context was read from: a GGUF's own, or config.json's."""
    return f"{spec['model_type']}.context_length" if spec["config_shape"] == "gguf" else "max_position_embeddings"


def render_inspect(result: dict, out=None) -> None:
    """Every value shown can come from the model's files (model_type, scaling values, buffer names) or a
    path: cells and lines go through `escape_text`."""
    from rich.table import Table

    out = out or console()
    out.soft_wrap = False  # rich wraps long lines at spaces; the terminal would cut words
    if "spec" not in result:  # GGUF inspection has its own shape
        out.print_json(data=result)  # JSON escapes every control character
        return
    spec = result["spec"]
    # the title holds a path: a line of its own, never wrapped (a table title wraps at the table's width)
    out.print(escape_text(f"RoPE of {result['source'].get('repo_id') or result['source']['path']}"), soft_wrap=True)
    table = Table(show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for label, value in _spec_rows(spec, result["buffers"]):
        table.add_row(label, escape_text(value))
    out.print(table)
    out.print(_dimension_table(result))
    if result.get("conversion"):
        conv = result["conversion"]
        counts = conv["counts"]
        out.print(f"{escape_text(conv['method'])} ×{conv['factor']:g}: serves {conv['served_context']} tokens, "
                  f"attention factor {conv['attention_factor']:.6g}; {counts['keep']} pairs kept, {counts['blend']} "
                  f"blended, {counts['interpolate']} interpolated")
        for w in unique(conv["warnings"]):
            if w not in result["warnings"]:
                print_labelled(out, "[yellow]warning:[/]", escape_text(w))
    # `check` findings restate the spec's own warnings with engines and a fix; only the
    # unknown-family warning has no finding of its own
    for w in unique(result["warnings"]):
        if w.startswith("model type ") or "findings" not in result:
            print_labelled(out, "[yellow]warning:[/]", escape_text(w))
    for f in result.get("findings", []):
        colour = "red" if f["severity"] == "error" else "yellow"
        print_labelled(out, f"[{colour}]{escape_text(f['severity'])}:[/]",
                       escape_text(f"{f['key']}: {f['problem']} — fix: {f['fix']} (`ropeconv check` for the engine "
                                   "table)"))
    if result.get("plot"):
        out.print(one_line(result["plot"]), markup=False)


def _spec_rows(spec: dict, buffers: list) -> list[tuple[str, str]]:
    rows = [
        ("architecture", f"{spec['model_type']}" + (f" (keys under {spec['config_path']})" if spec["config_path"] else "")),
        ("rope_theta (θ)", f"{spec['rope_theta']:g}"),
        ("head_dim", str(spec["head_dim"])),
        ("rotary dims", f"{spec['rotary_dim']} (partial fraction {spec['partial_rotary_factor']:g})"
                        + (", interleaved pairs" if spec["interleaved"] else "")),
        ("trained context L0", f"{spec['original_context']} (from {spec['original_context_source']})"),
        ("advertised context", f"{spec['max_position_embeddings']} ({_context_key(spec)})"),
        ("scaling", str(spec["rope_type"]) + (f": {scaling_text(spec['scaling'])}" if spec["scaling"] else "")),
        ("context it gives", str(spec["served_context"])),
        ("attention factor", f"{spec['attention_factor']:.10g}"),
        ("config shape", CONFIG_SHAPES.get(spec["config_shape"], str(spec["config_shape"]))
         + (f", nested by layer type {spec['nested_layer_types']}, scaling {spec['scaled_layer_type']}"
            if spec["nested_layer_types"] else "")),
        ("stored buffers", ", ".join(str(b.get("name", b.get("error", "?"))) for b in buffers[:4])
         + (f" … ({len(buffers)} in all)" if len(buffers) > 4 else "") if buffers else "none"),
    ]
    if spec["extra"]:
        rows.append(("kept as-is", scaling_text(spec["extra"])))
    return rows


def scaling_text(values: dict) -> str:
    """`{'factor': 4.0, 'original_max_position_embeddings': 8192}` as 'factor 4, original_max_position_embeddings
    8192' (lists of per-dimension factors as their length)."""
    def value(v) -> str:
        if isinstance(v, bool) or v is None:
            return str(v).lower() if v is not None else "null"
        if isinstance(v, (int, float)):
            return f"{v:g}"
        if isinstance(v, (list, tuple)):
            return f"[{len(v)} values]" if len(v) > 4 else "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + scaling_text(v) + "}"
        return str(v)

    return ", ".join(f"{k} {value(v)}" for k, v in values.items())


def _dimension_table(result: dict):
    """Wavelength against L0 per dimension pair (every pair up to 16, else a sample)."""
    from rich.table import Table

    dims = result["dimensions"]
    step = max(1, len(dims) // 16)
    shown = dims[::step] + ([dims[-1]] if (len(dims) - 1) % step else [])
    conv = result.get("conversion")
    sample = f", showing {len(shown)} of {len(dims)} pairs" if len(shown) < len(dims) else ""
    table = Table(title=f"per dimension pair (wavelength in tokens{sample})", title_justify="left")
    for col in ["pair", "wavelength", "÷ L0", "current scale"] + (["new scale", "action"] if conv else []):
        table.add_column(col, justify="right")
    for d in shown:
        row = [str(d["pair"]), f"{d['wavelength']:.4g}", f"{d['wavelength_over_L0']:.3g}", f"{d['current_scale']:.4g}"]
        if conv:
            row += [f"{d['new_scale']:.4g}", escape_text(d["action"])]
        table.add_row(*row)
    return table
