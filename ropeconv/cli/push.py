"""`ropeconv push`: upload a model folder (an extend output) to the Hugging Face Hub."""

from __future__ import annotations

from pathlib import Path

import typer

from ropeconv.cli.common import (COMMIT_MESSAGE_OPTION, CREATE_PR_OPTION, DEBUG_OPTION, JSON_OPTION, PRIVATE_OPTION,
                                 REVISION_OPTION, TOKEN_OPTION, console, run)


def register(app: typer.Typer) -> None:
    app.command("push", help="Push a model folder to the Hugging Face Hub, with a model card.",
                no_args_is_help=True)(push_command)


def push_command(
    folder: Path = typer.Argument(..., help="Model folder to push (e.g. an `extend` output)."),
    repo_id: str = typer.Argument(..., help="Destination repo, org/name (created when missing)."),
    private: bool = PRIVATE_OPTION,
    revision: str = REVISION_OPTION,
    create_pr: bool = CREATE_PR_OPTION,
    commit_message: str = COMMIT_MESSAGE_OPTION,
    token: str = TOKEN_OPTION,
    no_card: bool = typer.Option(False, "--no-card", help="Leave README.md as it is instead of writing the model card from ropeconv.json."),
    no_server_copy: bool = typer.Option(False, "--no-server-copy", help="Upload every file, even weights the source repo already stores."),
    as_json: bool = JSON_OPTION,
    debug: bool = DEBUG_OPTION,
) -> None:
    def body() -> dict:
        from ropeconv import hub

        if as_json:  # keep stdout to the one JSON document and stderr quiet
            from huggingface_hub.utils import disable_progress_bars

            disable_progress_bars()
        return hub.push_folder(folder, repo_id, private=private, revision=revision, create_pr=create_pr,
                               commit_message=commit_message, token=token, card=not no_card,
                               server_copy=not no_server_copy)

    run(body, as_json=as_json, debug=debug, render=render_push)


def _size(n: float) -> str:
    if n < 1000:
        return f"{n:.0f} B"
    for unit in ("KB", "MB", "GB", "TB"):
        n /= 1000
        if n < 1000 or unit == "TB":
            return f"{n:.1f} {unit}"
    return ""


def render_push(report: dict) -> None:
    out = console()
    if report.get("pr_url"):
        out.print(f"opened pull request: {report['pr_url']}")
    elif report.get("no_changes"):
        out.print(f"nothing to push: {report['repo_id']}@{report['revision']} already has these files "
                  f"({report['commit_url']})")
    else:
        out.print(f"pushed to {report['repo_id']}@{report['revision']}: {report['commit_url']}")
    up, copied, same = report["uploaded"], report["copied_server_side"], report["unchanged"]
    parts = [f"{up['files']} uploaded ({_size(up['bytes'])})"]
    if copied["files"]:
        parts.append(f"{copied['files']} copied on the Hub from {', '.join(copied['from'])} "
                     f"({_size(copied['bytes'])} not re-uploaded)")
    if same["files"]:
        parts.append(f"{same['files']} unchanged")
    out.print("files: " + ", ".join(parts))
    out.print(f"model card: {report['card']}")
    if report.get("note"):
        out.print(f"[yellow]note:[/] {report['note']}", markup=True, highlight=False)
