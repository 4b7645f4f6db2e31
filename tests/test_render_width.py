"""Tables and prose for people at a terminal 80 columns wide: every word stays whole.

The check: render once at 80 columns and once so wide that nothing wraps. Every run of word
characters in the narrow output must be a whole word of the wide one — a word cut at the edge of a
cell or line leaves fragments ("interpol", "ation") that are not words there.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from rich.console import Console

CORPUS = Path(__file__).parent / "fixtures" / "configs"
WORD = re.compile(r"\w+")


def render_at(width: int, draw) -> str:
    out = Console(width=width, file=io.StringIO(), highlight=False, soft_wrap=False, color_system=None)
    draw(out)
    return out.file.getvalue()


def assert_words_whole(draw) -> str:
    narrow, wide = render_at(80, draw), render_at(1000, draw)
    assert max(len(line) for line in narrow.splitlines()) <= 80
    words = set(WORD.findall(wide))
    broken = sorted({w for w in WORD.findall(narrow) if w not in words})
    assert not broken, f"words cut at 80 columns: {broken}\n{narrow}"
    return narrow


def test_methods_at_80_columns():
    from ropeconv.cli.methods import render_methods
    from ropeconv.methods import METHODS

    rows = [{"name": m.name, "convertible": m.convertible, "summary": m.summary, "training": m.training,
             "short_context_cost": m.short_context, "engines": m.engines} for m in METHODS.values()]
    narrow = assert_words_whole(lambda out: render_methods(rows, out))
    for m in METHODS.values():
        assert m.name in narrow
    # wide terminals keep the one-table layout, and its words whole too
    wide = render_at(160, lambda out: render_methods(rows, out))
    assert "what it does" in wide and set(WORD.findall(wide)) <= set(WORD.findall(render_at(1000, lambda out: render_methods(rows, out))))


@pytest.mark.parametrize("config, method", [("llama-3.1-8b-instruct", None), ("qwen2.5-7b-instruct", "yarn"),
                                            ("gemma-3-4b-it", None), ("phi-4-mini-instruct-4bit", None)])
def test_inspect_at_80_columns(tmp_path, config, method):
    from ropeconv import api
    from ropeconv.cli.inspect import render_inspect

    (tmp_path / "config.json").write_text((CORPUS / f"{config}.json").read_text())
    result = api.inspect(str(tmp_path), method=method, factor=4 if method else None)
    narrow = assert_words_whole(lambda out: render_inspect(result, out))
    scaling = next(line for line in narrow.splitlines() if "scaling" in line and "│" in line or
                   line.lstrip().startswith("scaling"))
    assert "{" not in scaling and "'" not in scaling  # never a Python dict repr


def test_scaling_row_reads_as_words(tmp_path):
    from ropeconv import api
    from ropeconv.cli.inspect import render_inspect, scaling_text

    assert scaling_text({"factor": 8.0, "low_freq_factor": 1.0, "original_max_position_embeddings": 8192}) == (
        "factor 8, low_freq_factor 1, original_max_position_embeddings 8192")
    assert scaling_text({"long_factor": [1.0] * 48, "short_factor": [1.0, 2.0]}) == (
        "long_factor [48 values], short_factor [1, 2]")
    (tmp_path / "config.json").write_text((CORPUS / "llama-3.1-8b-instruct.json").read_text())
    text = render_at(200, lambda out: render_inspect(api.inspect(str(tmp_path)), out))
    assert "llama3: factor 8, " in text and "{'" not in text


@pytest.fixture(scope="module")
def probe_results(tmp_path_factory):
    """Real probe results (a tiny model, L0 64, extended ×4) through the CLI, alone and --against."""
    from test_probe import build_model
    from typer.testing import CliRunner

    from ropeconv import api
    from ropeconv.cli import app

    root = tmp_path_factory.mktemp("width")
    source = build_model(root / "a-source-model-with-a-rather-long-name", "copy")
    output = root / "extended"
    api.extend(str(source), "yarn", factor=4, output=output)
    text = root / "text.txt"
    text.write_text("a" * 65 + "bcdefghijklmnopqrstuvwxyz" * 20)
    results = {}
    for name, extra in (("alone", []), ("against", ["--against", str(source)])):
        run = CliRunner().invoke(app, ["probe", str(output), "--quick", "--text", str(text), "--device", "cpu",
                                       "--json", "--no-save", *extra])
        results[name] = json.loads(run.stdout)
    return results


@pytest.mark.parametrize("kind", ["alone", "against"])
def test_probe_report_at_80_columns(probe_results, kind):
    from ropeconv.cli.probe_render import render

    result = probe_results[kind]
    assert result["verdict"]["checks"]  # long check details to wrap
    narrow = assert_words_whole(lambda out: render(result, out))
    assert "verdict:" in narrow and "Perplexity" in narrow


def test_probe_progress_lines_at_80_columns(probe_results):
    from ropeconv.cli.probe_render import RichProbeReporter
    from ropeconv.probe.progress import Estimate, ProbeStep

    estimate = Estimate(seconds=5400.0, warmup_tokens=1024, warmup_seconds=9.5, load_seconds=2.0,
                        steps=[{"role": "against", "length": 32768, "seconds": 2700.0},
                               {"role": "model", "length": 32768, "seconds": 2700.0}],
                        hint="to shorten it: --quick (4k and 1.5 × L0 in one pass per model: about 12 min 30 s "
                             "here), or a GPU (--device cuda)")
    step = ProbeStep(1, 2, "against", "before: SmolLM2-135M-Instruct", 32768, 40, 2700.0)

    def draw(out):
        reporter = RichProbeReporter(True, console=out)
        reporter.bars = False  # the notes only: a captured console is not a terminal
        reporter.estimate(estimate)
        reporter.begin(step)
        reporter.end(step, "before: SmolLM2-135M-Instruct at 4096 tokens: perplexity 3.21; 32768 tokens: "
                           "perplexity 334 (2650 s)")

    narrow = assert_words_whole(draw)
    assert "estimated time: about 1 h 30 min for 2 measurements" in " ".join(narrow.split())
    assert "warning: this probe will take about 1 h 30 min" in " ".join(narrow.split())


def test_the_progress_bar_runs_through_a_probe_and_stops(tmp_path):
    """The terminal path: a live bar from the estimate to the last step, then gone (transient)."""
    from test_probe import build_model

    from ropeconv.cli.probe_render import RichProbeReporter
    from ropeconv.probe import run_probe

    model = build_model(tmp_path / "tiny", "copy")
    text = tmp_path / "text.txt"
    text.write_text("a" * 300)
    terminal = Console(width=80, file=io.StringIO(), force_terminal=True, soft_wrap=False)
    reporter = RichProbeReporter(True, console=terminal)
    result = run_probe(model, against=model, lengths="48,128", text=text, device="cpu", progress=reporter)
    assert result["verdict"]["status"] == "pass"
    assert reporter._progress is None  # stopped after the last step
    shown = terminal.file.getvalue()
    assert "estimated time: about" in shown and "[2/2] after: tiny · 128 tokens" in shown


def test_serve_block_at_80_columns_keeps_each_command_whole():
    """The "serve it:" block: prose wraps between words; a command wider than the terminal stays on one
    line (rich used to break the Ollama line mid-command at 80 columns), so copy-paste works."""
    from ropeconv.cli.common import print_serve_commands
    from ropeconv.launch import gguf_launch_lines

    lines = gguf_launch_lines(131072, "/models/" + "a-very-long-output-name-" * 3 + "yarn-x4.gguf")
    narrow = render_at(80, lambda out: print_serve_commands(out, lines))
    shown = narrow.splitlines()
    for line in lines:
        assert "    " + line.command in shown, narrow
    prose = [s for s in shown if s.strip() not in {line.command for line in lines}]
    assert max(len(s) for s in prose) <= 80 and shown[0] == "serve it:"
    assert "required for the full context" in narrow  # Ollama's num_ctx line is needed
