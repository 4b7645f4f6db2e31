"""The command line as a user meets it: exit codes, one-line errors, --json, --debug, start-up cost."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import build_tiny


RECIPES = __import__("pathlib").Path(__file__).parent.parent / "recipes"


def ropeconv(*args, env=None):
    import os

    env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, "-m", "ropeconv", *args], capture_output=True, text=True, env=env)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return build_tiny("llama", tmp_path_factory.mktemp("cli") / "tiny")


def test_help_and_inspect_import_neither_torch_nor_transformers(model):
    code = ("import sys, runpy; sys.argv = ['ropeconv'] + sys.argv[1:]\n"
            "try:\n    runpy.run_module('ropeconv', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'transformers', 'huggingface_hub', 'gguf', 'numpy', 'matplotlib',\n"
            "                     'safetensors') if m in sys.modules]\n"
            "print('HEAVY', heavy, file=sys.stderr)")
    for args in (["--help"], ["inspect", str(model)], ["inspect", str(model), "-m", "yarn", "-f", "4", "--json"],
                 ["methods"], ["extend", "--help"], ["check", str(model)], ["check", str(model), "--json"],
                 ["batch", str(RECIPES), "--dry-run"], ["extend", str(model), "-m", "yarn", "-f", "2", "--dry-run"]):
        result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
        assert "HEAVY []" in result.stderr, (args, result.stderr[-500:])


def test_extend_json_is_one_document(model, tmp_path):
    result = ropeconv("extend", str(model), "-m", "yarn", "-f", "4", "-o", str(tmp_path / "o"), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["after"]["rope_type"] == "yarn" and report["output"] == str(tmp_path / "o")


def test_inspect_json_and_people_output(model):
    result = ropeconv("inspect", str(model), "--method", "yarn", "--factor", "8", "--json")
    doc = json.loads(result.stdout)
    assert doc["spec"]["rope_theta"] == 10000.0 and doc["conversion"]["served_context"] == 32768
    assert {d["action"] for d in doc["dimensions"]} == {"keep", "blend", "interpolate"}
    text = ropeconv("inspect", str(model), "-m", "yarn", "-f", "8").stdout
    assert "trained context L0" in text and "interpolated" in text


def test_methods_lists_all_with_non_convertible(model):
    rows = json.loads(ropeconv("methods", "--json").stdout)
    assert [r["name"] for r in rows] == ["linear", "ntk", "dynamic", "yarn", "llama3", "longrope", "alibi", "absolute"]
    assert "not convertible" in ropeconv("methods").stdout


@pytest.mark.parametrize("args,message", [
    (["-m", "yarm", "-f", "4"], "did you mean 'yarn'"),
    (["-m", "yarn", "-f", "nan"], "not a finite number"),
    (["-m", "yarn", "-f", "1"], "must be greater than 1"),
    (["-m", "yarn"], "exactly one of --factor and --target-context"),
    (["-m", "yarn", "-f", "4", "--buffers", "maybe"], "--buffers 'maybe'"),
    (["-m", "longrope", "-f", "4", "--short-factor", "1,2", "--long-factor", "1,2"], "has 2 numbers"),
    (["-m", "yarn", "-f", "4", "--beta-fast", "1", "--beta-slow", "2"], "beta_fast"),
])
def test_bad_input_is_one_line_exit_2(model, tmp_path, args, message):
    result = ropeconv("extend", str(model), *args, "-o", str(tmp_path / "o"))
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_missing_model_and_debug_traceback(tmp_path):
    result = ropeconv("inspect", str(tmp_path / "nope"))
    assert result.returncode == 2 and "no local folder or file" in result.stderr and "Traceback" not in result.stderr
    result = ropeconv("inspect", str(tmp_path / "nope"), "--debug")
    assert result.returncode == 2 and "Traceback" in result.stderr
    result = ropeconv("inspect", str(tmp_path / "nope"), "--json")
    assert json.loads(result.stdout)["exit_code"] == 2


def test_longrope_lists_from_json_file(tmp_path):
    src = build_tiny("phi3", tmp_path / "phi3")
    (tmp_path / "factors.json").write_text(json.dumps({"short_factor": [1.0] * 8, "long_factor": [2.0] * 8}))
    result = ropeconv("extend", str(src), "-m", "longrope", "-f", "4", "--short-factor", str(tmp_path / "factors.json"),
                      "--long-factor", str(tmp_path / "factors.json"), "-o", str(tmp_path / "o"), "--json")
    assert result.returncode == 0, result.stderr
    cfg = json.loads((tmp_path / "o" / "config.json").read_text())
    assert cfg["rope_scaling"]["long_factor"] == [2.0] * 8 and cfg["original_max_position_embeddings"] == 4096


@pytest.mark.parametrize("args,message", [
    (["inspect", "{model}", "--method", "yarn"], "--method needs --factor or --target-context"),
    (["extend", "{model}", "-m", "longrope", "-f", "4", "--short-factor", "{bad_json}", "--long-factor", "1"],
     "is not valid JSON"),
    (["extend", "{model}", "-m", "longrope", "-f", "4", "--short-factor", "{no_list}", "--long-factor", "1"],
     "holds no list named short_factor"),
    (["extend", "{model}", "-m", "longrope", "-f", "4", "--short-factor", "one,two", "--long-factor", "1"],
     "neither a file nor a list of numbers"),
    (["batch", "{recipes}", "--dry-run", "--shard", "3"], "--shard"),
    (["batch", "{recipes}", "--dry-run", "--shard", "5/4"], "--shard"),
    (["batch", "{recipes}", "--dry-run", "--only", "no-such-recipe"], "no-such-recipe"),
    (["probe", "{model}", "--text", "{latin1}", "--lengths", "64"], "UTF-8"),
])
def test_more_bad_input_is_one_line_exit_2(model, tmp_path, args, message):
    (tmp_path / "bad.json").write_text("{oops")
    (tmp_path / "nolist.json").write_text('{"long_factor": [1.0]}')
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 ".encode("latin-1") * 100)
    fill = {"model": str(model), "bad_json": str(tmp_path / "bad.json"), "no_list": str(tmp_path / "nolist.json"),
            "recipes": str(RECIPES), "latin1": str(tmp_path / "latin1.txt")}
    result = ropeconv(*[a.format(**fill) for a in args])
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["extend", "check", "tune", "inspect", "probe"])
def test_help_shows_the_revision_syntax(command):
    # rich markup would eat an unescaped "[@revision]"
    result = ropeconv(command, "--help")
    assert result.returncode == 0 and "org/name[@revision]" in result.stdout


def test_extend_probe_that_cannot_run_says_the_output_was_written(tmp_path):
    """`extend --probe` on a model the probe cannot read (no tokenizer): the output exists, so the exit is not 2
    ("nothing was written") but 1, and the one line says what was written."""
    source = build_tiny("llama", tmp_path / "src")
    out = tmp_path / "out"
    proc = ropeconv("extend", str(source), "-m", "yarn", "-f", "2", "-o", str(out), "--probe")
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"wrote {out}" in errors[0] and "probe could not run" in errors[0]
    assert (out / "config.json").is_file()
