"""The README's examples are the tool's real output (scripts/readme_examples.py writes them): each fast
example is run again here on the SmolLM2 demo model and must match its block to the character; the probe
block must contain the renderer's output for the stored result of the real probe run that produced it."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _examples():
    spec = importlib.util.spec_from_file_location("readme_examples", ROOT / "scripts" / "readme_examples.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


examples = _examples()


def test_every_example_has_a_block_and_every_block_an_example():
    blocks = examples.blocks(examples.README.read_text(encoding="utf-8"))
    assert sorted(blocks) == sorted([e.name for e in examples.EXAMPLES] + ["serve"])
    assert all(body.strip() for body in blocks.values()), "an empty example block: run scripts/readme_examples.py"


@pytest.mark.slow
def test_fast_examples_match_the_tool_output(tmp_path):
    blocks = examples.blocks(examples.README.read_text(encoding="utf-8"))
    found = examples.outputs(examples.scratch_folder(tmp_path), slow=False)
    for name, output in found.items():
        assert blocks[name] == output, f"README example '{name}' differs from the tool: run scripts/readme_examples.py"


def test_probe_block_is_the_stored_real_result_as_rendered():
    result = json.loads(examples.PROBE_RESULT.read_text(encoding="utf-8"))
    block = examples.blocks(examples.README.read_text(encoding="utf-8"))["probe"]
    assert examples.rendered_probe(result) in block
    assert result["verdict"]["passed"] is True or result["verdict"].get("status") == "pass"


def test_the_quick_start_comes_first_and_its_commands_exist():
    readme = examples.README.read_text(encoding="utf-8")
    assert readme.index("## Quick start") < readme.index("# Reference")
    assert readme[: readme.index("## Commands")].count("\n") < 150  # a newcomer's path, not a manual
    for script in ("scripts/demo.sh", "scripts/test.sh"):
        assert f"bash {script}" in readme and (ROOT / script).is_file()
