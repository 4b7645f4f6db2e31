"""`ropeconv finetune`: PoSE short-window training of an extended model to its target length."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from ropeconv.cli.common import (COMMIT_MESSAGE_OPTION, CREATE_PR_OPTION, DEBUG_OPTION, JSON_OPTION, PRIVATE_OPTION,
                                 PUSH_TO_OPTION, REVISION_OPTION, TOKEN_OPTION, console, escape_text, one_line,
                                 print_labelled, print_serve_commands, push_output, run, serve_lines)
from ropeconv.cli.params import MethodOptions, with_method_options

HELP = (
    "Fine-tune a model at its extended context with short windows (PoSE: position ids skip ahead so a "
    "--window of 2k tokens trains the distances of the whole target). MODEL is an unscaled model (give "
    "--method and --factor/--target-context: extended as `extend` would) or a ropeconv output (its "
    "scaling is kept). Trains with transformers' Trainer: checkpoints every --save-every steps in "
    "DIR.finetune-tmp; run the same command again after a kill to continue. Several processes: "
    "torchrun --nproc-per-node N -m ropeconv finetune … . The output is written like extend's, with "
    "finetune.json (losses, evaluation before/after) and finetune.png."
)


def register(app: typer.Typer) -> None:
    app.command("finetune", help=HELP, no_args_is_help=True)(finetune_command)


@with_method_options
def finetune_command(
    model: str = typer.Argument(..., help="Unscaled model folder / Hub repo id, or a ropeconv output folder."),
    output: Path = typer.Option(..., "--output", "-o", help="Output folder."),
    method: str = typer.Option(None, "--method", "-m", help="Extension method for an unscaled model (yarn, …)."),
    factor: str = typer.Option(None, "--factor", "-f", help="Scale factor S: the new context is L0 × S."),
    target_context: str = typer.Option(None, "--target-context", help="Target context in tokens, e.g. 32k."),
    original_context: str = typer.Option(None, "--original-context", help="Override L0, the trained context."),
    steps: int = typer.Option(None, "--steps", help="Optimizer steps (default 1000)."),
    time_limit: str = typer.Option(None, "--time", help="Train for this long instead, e.g. 30m, 2h."),
    tokens: int = typer.Option(None, "--tokens", help="Train on this many tokens instead."),
    window: int = typer.Option(2048, "--window", help="Tokens per training sample (PoSE window)."),
    chunks: int = typer.Option(2, "--chunks", help="PoSE chunks per window (each with its own position skip)."),
    lr: float = typer.Option(2e-5, "--lr", help="Learning rate (constant after a short warm-up)."),
    lora: int = typer.Option(None, "--lora", help="Train LoRA adapters of this rank (plus embeddings and norms); "
                             "merged into the weights on output."),
    text: list[Path] = typer.Option(None, "--text", help="UTF-8 training text file (repeatable; default: Python "
                                    "standard-library source, less the probe's modules)."),
    dataset: str = typer.Option(None, "--dataset", help="Hugging Face dataset NAME[:config[:split]] to train on."),
    eval_text: Path = typer.Option(None, "--eval-text", help="Held-out evaluation text (default: the probe's text)."),
    eval_length: str = typer.Option(None, "--eval-length", help="Evaluation window in tokens (default: the target)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the samples, their positions and the initialisation."),
    batch_size: int = typer.Option(1, "--batch-size", help="Samples per process per micro-step."),
    grad_accum: int = typer.Option(1, "--grad-accum", help="Micro-steps per optimizer step."),
    save_every: int = typer.Option(100, "--save-every", help="Checkpoint every N steps."),
    resume: bool = typer.Option(False, "--resume", help="Continue a killed run (refuse when there is none)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing non-empty output folder."),
    device: str = typer.Option("auto", "--device", help="auto, cuda, mps or cpu."),
    dtype: str = typer.Option("auto", "--dtype", help="auto (bfloat16 mixed precision where the device computes it "
                              "natively, else float32), bfloat16 or float32."),
    push_to: str = PUSH_TO_OPTION,
    private: bool = PRIVATE_OPTION,
    revision: str = REVISION_OPTION,
    create_pr: bool = CREATE_PR_OPTION,
    commit_message: str = COMMIT_MESSAGE_OPTION,
    token: str = TOKEN_OPTION,
    as_json: bool = JSON_OPTION,
    debug: bool = DEBUG_OPTION,
    method_opts: MethodOptions = None,
) -> None:
    main = int(os.environ.get("RANK", "0")) == 0  # under torchrun only the main process prints

    def body() -> dict:
        from ropeconv.finetune import FinetuneSettings, run_finetune
        from ropeconv.probe import parse_length

        settings = FinetuneSettings(
            output=output, method=method, factor=factor, target_context=target_context,
            original_context=original_context, params=method_opts.to_params(), steps=steps, time_limit=time_limit,
            tokens=tokens, window=window, chunks=chunks, lr=lr, lora=lora, text=tuple(text or ()), dataset=dataset,
            eval_text=eval_text, eval_length=parse_length(eval_length) if eval_length else None, seed=seed,
            batch_size=batch_size, grad_accum=grad_accum, save_every=save_every, resume=resume, force=force,
            device=device, dtype=dtype)
        with _progress(enabled=not as_json and main) as report:
            result = run_finetune(model, settings, report=report)
        if push_to and main:
            result["push"] = push_output(result["output"], push_to, as_json=as_json, private=private,
                                         revision=revision, create_pr=create_pr, commit_message=commit_message,
                                         token=token)
        return result

    run(body, as_json=as_json and main, debug=debug, render=render_finetune if main else (lambda r: None))


class _progress:
    """step k/N, loss, tokens/s and an ETA on stderr (rich); silent when disabled."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.bar = None

    def __enter__(self):
        if not self.enabled or not console(stderr=True).is_terminal:  # off a terminal rich leaves an empty line
            return None
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("training"), BarColumn(), TextColumn("{task.fields[line]}"),
                            TimeElapsedColumn(), console=console(stderr=True), transient=True)
        self.bar.__enter__()
        self.task = self.bar.add_task("training", total=None, line="starting …")
        return self.report

    def report(self, p) -> None:
        eta = f", ETA {p.eta_seconds:.0f}s" if p.eta_seconds is not None else ""
        loss = f", loss {p.loss:.3f}" if p.loss is not None else ""
        of = f"/{p.total}" if p.total else ""
        self.bar.update(self.task, total=p.total, completed=p.step,
                        line=f"step {p.step}{of}{loss}, {p.tokens_per_second:,.0f} tokens/s{eta}")

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)
        return False


def render_finetune(result: dict) -> None:
    out = console()
    if "output" not in result:
        return
    train, ev = result["train"], result["eval"]
    out.print(f"wrote {one_line(result['output'])}", markup=False, soft_wrap=True)
    out.print(f"trained {train['steps']} steps ({train['tokens']:,} tokens, "
              f"{train['tokens_per_second'] or 0:,.0f} tokens/s)"
              + (f", resumed from step {train['resumed_from']}" if train["resumed_from"] else ""), markup=False)
    rows = [("unscaled", (ev["before"] or {}).get("unscaled")), ("training-free", (ev["before"] or {}).get("training_free")),
            ("fine-tuned", ev["after"])]
    for label, summary in rows:
        if summary:
            out.print(f"{label:>14}: ppl {summary['ppl']:.3f}, past L0 {_num(summary['ppl_beyond'])}, "
                      f"inside L0 {_num(summary['ppl_inside'])} (at {ev['length']} tokens)", markup=False)
    for w in result.get("warnings", []):
        print_labelled(out, "[yellow]warning:[/]", escape_text(w))
    print_serve_commands(out, serve_lines(result.get("launch") or []))
    if result.get("push"):
        out.print(f"pushed: {result['push'].get('url')}")


def _num(value) -> str:
    return "—" if value is None else f"{value:.3f}"
