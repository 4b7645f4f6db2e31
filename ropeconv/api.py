"""The library API the CLI, recipes, batch, tune and tests call: `extend` and `inspect`.

A short dispatcher: it builds the request, locates the model (`ropeconv.source.resolve`) and hands it
to the format adapter — `ropeconv.formats.hf` for a model folder, `ropeconv.formats.gguf` for a GGUF
file — which plans, writes and reports. Results are plain JSON-able dicts (the CLI's --json prints
them as they are).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ropeconv.formats.hf import extend_folder, inspect_folder
from ropeconv.request import ConversionRequest, parse_token_field
from ropeconv.source import Source, resolve


def extend(model: str | Source, request: ConversionRequest | str, *, advance: Callable[[int], None] | None = None,
           **options: Any) -> dict:
    """Extend MODEL's context as `request` asks (or build one: `extend(model, "yarn", factor=4)`).
    MODEL is what a user names (a folder, a `.gguf`, a Hub id) or a `Source` a caller already resolved
    (tune, finetune: the model is located once). Returns a report; writes nothing on a dry run."""
    if not isinstance(request, ConversionRequest):
        request = ConversionRequest.build(request, **options)
    source = model if isinstance(model, Source) else resolve(model, need="headers" if request.dry_run else "weights")
    if source.kind == "gguf":
        from ropeconv.formats.gguf import extend_gguf  # the GGUF reader is only loaded for GGUF files

        return extend_gguf(source.path, request, progress=advance)
    return extend_folder(source, request, advance=advance)


def inspect(model: str, *, method: str | None = None, factor: Any = None, target_context: Any = None,
            original_context: Any = None, params: dict | None = None) -> dict:
    """Explain MODEL's RoPE setup; with `method`, what a conversion would do per dimension."""
    request = None
    if method:
        request = ConversionRequest.build(method, factor=factor, target_context=target_context,
                                          original_context=original_context, params=params, rebase=True)
        original_context = request.original_context
    elif original_context is not None:
        original_context = parse_token_field("original_context", original_context)
    source = resolve(model, need="headers")
    if source.kind == "gguf":
        from ropeconv.formats.gguf import inspect_gguf

        return inspect_gguf(source.path, request, original_context=original_context)
    return inspect_folder(source, request, original_context=original_context, findings=_findings)


def _findings(folder: Path, original_context: int | None) -> list[dict]:
    """The config mistakes `ropeconv check` knows (errors and warnings only), for inspect to show."""
    from ropeconv.check import check_folder

    found = check_folder(folder, original_context=original_context)["findings"]
    return [f for f in found if f["severity"] in ("error", "warning")]
