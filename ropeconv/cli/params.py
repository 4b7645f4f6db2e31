"""Method-parameter options shared by `extend`, `inspect` and `check --fix`, and their parsing."""

from __future__ import annotations

from dataclasses import dataclass

import typer

from ropeconv.plan import parse_factor_list


@dataclass
class MethodOptions:
    beta_fast: float | None = None
    beta_slow: float | None = None
    mscale: float | None = None
    mscale_all_dim: float | None = None
    attention_factor: float | None = None
    truncate: bool | None = None
    low_freq_factor: float | None = None
    high_freq_factor: float | None = None
    short_factor: str | None = None
    long_factor: str | None = None

    def to_params(self) -> dict:
        params = {k: v for k, v in self.__dict__.items() if v is not None}
        for key in ("short_factor", "long_factor"):
            if key in params:
                params[key] = parse_factor_list(key, params[key])
        return params


_PANEL = "Method parameters"
METHOD_OPTIONS = {
    "beta_fast": (float, typer.Option(None, "--beta-fast", help="yarn: rotations above which dims are kept (default 32).", rich_help_panel=_PANEL)),
    "beta_slow": (float, typer.Option(None, "--beta-slow", help="yarn: rotations below which dims are interpolated (default 1).", rich_help_panel=_PANEL)),
    "mscale": (float, typer.Option(None, "--mscale", help="yarn: DeepSeek-style mscale (with --mscale-all-dim).", rich_help_panel=_PANEL)),
    "mscale_all_dim": (float, typer.Option(None, "--mscale-all-dim", help="yarn: DeepSeek-style mscale_all_dim.", rich_help_panel=_PANEL)),
    "attention_factor": (float, typer.Option(None, "--attention-factor", help="yarn/longrope: explicit attention factor (several engines ignore it).", rich_help_panel=_PANEL)),
    "truncate": (bool, typer.Option(None, "--truncate/--no-truncate", help="yarn: round the ramp bounds (default: truncate).", show_default=False, rich_help_panel=_PANEL)),
    "low_freq_factor": (float, typer.Option(None, "--low-freq-factor", help="llama3: default 1.", rich_help_panel=_PANEL)),
    "high_freq_factor": (float, typer.Option(None, "--high-freq-factor", help="llama3: default 4.", rich_help_panel=_PANEL)),
    "short_factor": (str, typer.Option(None, "--short-factor", help="longrope: d/2 numbers, inline (1.0,1.1,…) or a JSON file.", rich_help_panel=_PANEL)),
    "long_factor": (str, typer.Option(None, "--long-factor", help="longrope: d/2 numbers, inline or a JSON file.", rich_help_panel=_PANEL)),
}


def with_method_options(command):
    """Add the method-parameter options to a typer command; it receives them as `method_opts`."""
    import functools
    import inspect

    signature = inspect.signature(command)
    params = [p for p in signature.parameters.values() if p.name != "method_opts"]
    params += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind)
               for name, (kind, option) in METHOD_OPTIONS.items()]

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        opts = MethodOptions(**{name: kwargs.pop(name, None) for name in METHOD_OPTIONS})
        return command(*args, method_opts=opts, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=params)
    return wrapper
