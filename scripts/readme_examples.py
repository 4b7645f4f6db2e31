"""The README's examples, as the tool prints them: each block between `<!-- example:NAME -->` and
`<!-- /example:NAME -->` is the real output of the command above it, run on the offline SmolLM2 demo
model (`python -m ropeconv.smollm`) in a scratch folder, at 100 columns without colour.

    python scripts/readme_examples.py            # rewrite the README's example blocks from fresh runs
    python scripts/readme_examples.py --probe    # … including the quick probe (≈ 4 min on 2 cores)

tests/test_readme.py runs the fast examples again and holds every block to the tool's output; the
probe block is held to the renderer's output for the probe result stored beside it
(docs/examples/quickstart-probe.json, written by the `--probe` run).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PROBE_RESULT = ROOT / "docs" / "examples" / "quickstart-probe.json"
MODEL = "SmolLM2-135M-Instruct"
WIDTH = 100


@dataclass(frozen=True)
class Example:
    name: str  # the README marker's name
    argv: tuple[str, ...]  # after `ropeconv`
    slow: bool = False  # minutes: run only with --probe; the test re-renders its stored result instead


# A config mistake as published: Qwen3-8B's config.json (tests/fixtures/configs) with the YaRN snippet from
# Qwen's model card added and max_position_embeddings left at 40960.
QWEN3 = "Qwen3-8B"
QWEN3_SCALING = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}


EXAMPLES = (
    Example("inspect", ("inspect", MODEL)),
    Example("extend", ("extend", MODEL, "--method", "yarn", "--factor", "4")),
    Example("check", ("check", f"{MODEL}-yarn-x4")),
    Example("methods", ("methods",)),
    Example("check-mistake", ("check", QWEN3)),
    Example("probe", ("probe", f"{MODEL}-yarn-x4", "--against", MODEL, "--quick"), slow=True),
)
BLOCK = re.compile(r"(<!-- example:(?P<name>[\w-]+) -->\n```text\n)(?P<body>.*?)(```\n<!-- /example:(?P=name) -->)", re.S)


def environment() -> dict[str, str]:
    env = dict(os.environ, COLUMNS=str(WIDTH), LINES="50", NO_COLOR="1", TERM="dumb")
    env.pop("FORCE_COLOR", None)
    return env


def normalize(text: str, workdir: Path) -> str:
    """The output as a reader would see it in their own folder: the scratch folder is `.`."""
    text = text.replace(str(workdir.resolve()), ".").replace(str(workdir), ".")
    return "\n".join(line.rstrip() for line in text.splitlines()).strip("\n") + "\n"


def run(example: Example, workdir: Path) -> str:
    proc = subprocess.run([sys.executable, "-m", "ropeconv", *example.argv], cwd=workdir, env=environment(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=1800)
    return normalize(proc.stdout, workdir)


def scratch_folder(parent: Path) -> Path:
    """A folder holding the demo model under its own name (a symlink to the cached folder)."""
    from ropeconv import smollm

    workdir = parent / "examples"
    workdir.mkdir()
    (workdir / MODEL).symlink_to(smollm.ensure_folder(), target_is_directory=True)
    config = json.loads((ROOT / "tests" / "fixtures" / "configs" / "qwen3-8b.json").read_text(encoding="utf-8"))
    (workdir / QWEN3).mkdir()
    (workdir / QWEN3 / "config.json").write_text(json.dumps({**config, "rope_scaling": QWEN3_SCALING}, indent=2))
    return workdir


def outputs(workdir: Path, *, slow: bool) -> dict[str, str]:
    """Each example's output, in order (extend before check: check reads extend's output)."""
    found = {}
    for example in EXAMPLES:
        if example.slow and not slow:
            continue
        found[example.name] = run(example, workdir)
        if example.name == "extend":  # the Quick start shows its last block: how to serve the output
            found["serve"] = found["extend"][found["extend"].index("serve it:"):]
        if example.name == "probe":
            PROBE_RESULT.parent.mkdir(parents=True, exist_ok=True)
            result = json.loads((workdir / f"{MODEL}-yarn-x4" / "probe.json").read_text())
            PROBE_RESULT.write_text(json.dumps(result, indent=2) + "\n")
    return found


def blocks(readme: str) -> dict[str, str]:
    return {m["name"]: m["body"] for m in BLOCK.finditer(readme)}


def replace_blocks(readme: str, new: dict[str, str]) -> str:
    return BLOCK.sub(lambda m: m.group(1) + new.get(m["name"], m["body"]) + m.group(4), readme)


def rendered_probe(result: dict) -> str:
    """The probe report for a stored result, as `ropeconv probe` prints it at WIDTH columns."""
    import io

    from rich.console import Console

    from ropeconv.cli.probe_render import render

    buffer = io.StringIO()
    render(result, Console(file=buffer, width=WIDTH, no_color=True, highlight=False, soft_wrap=False))
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()).strip("\n") + "\n"


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory() as parent:
        found = outputs(scratch_folder(Path(parent)), slow="--probe" in argv)
    README.write_text(replace_blocks(README.read_text(encoding="utf-8"), found), encoding="utf-8")
    print(f"updated {', '.join(found)} in {README.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
