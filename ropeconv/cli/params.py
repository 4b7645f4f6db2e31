"""Method-parameter options shared by `extend`, `inspect` and `check --fix`, made from the method
registry (`ropeconv.methods.PARAMS`): one option per parameter, its help from the registry."""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field

import typer

from ropeconv.methods import PARAMS
from ropeconv.request import cli_flag, parse_factor_list

_PANEL = "Method parameters"
_KINDS = {"number": float, "bool": bool, "factors": str}


@dataclass
class MethodOptions:
    """The method-parameter options as given on the command line (None: not given)."""

    values: dict = field(default_factory=dict)

    def to_params(self) -> dict:
        params = {k: v for k, v in self.values.items() if v is not None}
        for key, value in params.items():
            if PARAMS[key].kind == "factors":  # inline list or a JSON file
                params[key] = parse_factor_list(key, value)
        return params


def _option(name: str) -> typer.models.OptionInfo:
    param = PARAMS[name]
    flag = cli_flag(name)
    help_text = param.help + (" inline 1.0,1.1,… or a JSON file." if param.kind == "factors" else ".")
    if param.kind == "bool":
        return typer.Option(None, f"{flag}/--no-{flag[2:]}", help=help_text, show_default=False,
                            rich_help_panel=_PANEL)
    return typer.Option(None, flag, help=help_text, rich_help_panel=_PANEL)


def with_method_options(command):
    """Add the method-parameter options to a typer command; it receives them as `method_opts`."""
    signature = inspect.signature(command)
    params = [p for p in signature.parameters.values() if p.name != "method_opts"]
    params += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=_option(name),
                                 annotation=_KINDS[p.kind]) for name, p in PARAMS.items()]

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        opts = MethodOptions({name: kwargs.pop(name, None) for name in PARAMS})
        return command(*args, method_opts=opts, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=params)
    return wrapper
