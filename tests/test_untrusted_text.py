"""Untrusted text on screen and in printed commands: a model_type / general.architecture holding a newline
and ANSI escapes forges no line in `inspect`, `check` or `extend` (success output included); every launch
line is an argument list quoted for any path, run here with bash; the "serve it:" block; GGUF metadata of
the wrong type is one line, exit 2, the same for `inspect` and `check`.

Stubs: in the bash runs, `vllm`, `python`, `llama-server`, `ollama` and `ropeconv` are shell functions that
record their arguments (the engines are not under test: the quoting is). Everything else is real: folders,
GGUF files written with the gguf package's writer, the CLI in-process (typer's CliRunner) or as a process.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from model_files import CONFIG, snapshot, write_model
from ropeconv.cli import app
from ropeconv.launch import SERVE, from_config, gguf_launch_lines, launch_lines

gguf = pytest.importorskip("gguf")

FORGED = "llama\nerror: forged \x1b[31mRED\x1b[0m [bold]x[/bold] %s %d"
HOSTILE_PATHS = ["plain.gguf", "Qwen%2FQwen-yarn.gguf", "it's here.gguf", 'a "quoted" name.gguf', "$HOME.gguf",
                 "a;rm -rf x.gguf", "new\nline.gguf", "esc\x1b[31m.gguf", "back\\slash%s.gguf", "`tick`.gguf",
                 "-dash.gguf", "uni\u2028sep.gguf"]


def cli(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def no_forged_line(text: str, real_errors: int = 0) -> None:
    assert "\x1b" not in text and "\u2028" not in text, text
    assert sum(line.startswith("error:") for line in text.splitlines()) == real_errors, text


def write_gguf(path: Path, arch: str = "llama", kv: dict | None = None, ctx: int | None = 4096) -> Path:
    from model_files import write_gguf_file

    T = gguf.GGUFValueType
    keys = {f"{arch}.context_length": (T.UINT32, ctx)} if ctx is not None else {}
    keys.update({f"{arch}.embedding_length": (T.UINT32, 64), f"{arch}.attention.head_count": (T.UINT32, 4),
                 f"{arch}.rope.freq_base": (T.FLOAT32, 10000.0), f"{arch}.rope.dimension_count": (T.UINT32, 16)})
    for key, (vtype, value, *sub) in (kv or {}).items():
        keys[key.replace("{arch}", arch)] = (getattr(T, vtype), value, *(getattr(T, s) for s in sub))
    return write_gguf_file(path, arch, keys)


# -- 1. hostile text from a model's files -----------------------------------------------------------------

def test_hostile_model_type_forges_no_line_in_inspect_check_extend(tmp_path):
    src = write_model(tmp_path / "m", {**CONFIG, "model_type": FORGED})
    before = snapshot(src)
    for args in (["inspect", src], ["inspect", src, "-m", "yarn", "-f", "4"], ["check", src],
                 ["extend", src, "-m", "yarn", "-f", "4", "-o", tmp_path / "out"]):
        rc, out, err = cli(*args)
        assert rc == 0, (args, err)
        no_forged_line(out + err)
        assert "llama\\nerror:forged\\x1b[31mRED" in "".join(out.split()), (args, out)  # shown, escaped
        assert "[bold]x[/bold]" in out  # markup shown as text, not applied
    assert snapshot(src) == before


def test_hostile_gguf_architecture_forges_no_line(tmp_path):
    src = write_gguf(tmp_path / "m.gguf", arch=FORGED)
    for args in (["inspect", src], ["check", src], ["extend", src, "-m", "yarn", "-f", "4", "-o", tmp_path / "o.gguf"]):
        rc, out, err = cli(*args)
        assert rc in (0, 2), (args, err)
        no_forged_line(out + err, real_errors=int(rc != 0))
    rc, out, _ = cli("inspect", src)
    assert rc == 0 and "forged \\x1b[31mRED" in out


# -- 2. launch lines: argument lists, quoted for any path ----------------------------------------------------

RECORDERS = "".join(f"{name}() {{ printf '%s\\0' {name} \"$@\" >> argv; }}; "
                    for name in ("vllm", "python", "llama-server", "ollama", "ropeconv"))


def run_printed(command: str, where: Path) -> list[list[str]]:
    """Run a printed command with bash in `where` (the engines recorded, not run); the argument lists."""
    (where / "argv").unlink(missing_ok=True)
    # each recorder call appends one NUL-separated list; `printf` is the real one (it writes the Modelfile)
    script = RECORDERS.replace(">> argv;", ">> argv; printf '\\n\\n' >> argv;") + command
    result = subprocess.run(["bash", "-c", script], cwd=where, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    calls = (where / "argv").read_text().split("\n\n") if (where / "argv").exists() else []
    return [call.split("\0")[:-1] for call in calls if call]


@pytest.mark.parametrize("name", HOSTILE_PATHS)
def test_ollama_line_writes_a_modelfile_naming_the_path(tmp_path, name):
    from ropeconv.launch import ollama_command

    gguf_path = str(tmp_path / name)
    command = ollama_command(gguf_path, 16384)
    assert "\n" not in command and "\x1b" not in command  # one printable line
    calls = run_printed(command, tmp_path)
    assert (tmp_path / "Modelfile").read_text() == f"FROM {gguf_path}\nPARAMETER num_ctx 16384\n"
    assert calls and calls[-1][:2] == ["ollama", "create"] and calls[-1][3:] == ["-f", "Modelfile"]


@pytest.mark.parametrize("name", HOSTILE_PATHS)
def test_every_serve_line_passes_the_path_as_one_argument(tmp_path, name):
    out = str(tmp_path / name.replace(".gguf", ""))
    after = {"max_position_embeddings": 16384, "rope_theta": 10000.0,
             "rope_scaling": {"rope_type": "linear", "factor": 4.0}}
    conversion = from_config(after, "linear", 4.0, 4096, 16384, "llama", 10000.0)
    lines = [line for line in launch_lines(conversion, out, out) if line.kind == SERVE]
    lines += gguf_launch_lines(16384, out + ".gguf")
    for line in lines:
        if line.engine == "Ollama":
            continue  # above: its Modelfile
        calls = run_printed(line.command, tmp_path)
        assert any(out in call or out + ".gguf" in call for call in calls), (line.command, calls)


def test_shell_join_is_shlex_where_shlex_can_say_it():
    from ropeconv.launch import shell_join

    argv = ["vllm", "serve", "a b", "it's", "%2F", "$x"]
    assert shell_join(argv) == shlex.join(argv) and shlex.split(shell_join(argv)) == argv


def test_extend_prints_the_real_path_percent_and_all(tmp_path):
    """The Ollama line was a printf format built from the path: 'Qwen%2FQwen-yarn.gguf' printed
    'Qwen0.000000Qwen-yarn.gguf'."""
    src = write_gguf(tmp_path / "tiny.gguf")
    dest = tmp_path / "Qwen%2FQwen-yarn.gguf"
    rc, out, err = cli("extend", src, "-m", "yarn", "-f", "4", "-o", dest)
    assert rc == 0, err
    ollama = next(line for line in out.splitlines() if "ollama create" in line)
    run_printed(ollama.strip(), tmp_path)
    assert (tmp_path / "Modelfile").read_text().splitlines()[0] == f"FROM {dest}"


# -- 3. the serve block -------------------------------------------------------------------------------------

def test_serve_block_after_extend_is_unbroken_at_80_columns(tmp_path):
    src = write_model(tmp_path / "a-rather-long-model-folder-name-to-push-commands-past-eighty-columns")
    out = tmp_path / "out dir"
    env = {**os.environ, "COLUMNS": "80"}
    result = subprocess.run([sys.executable, "-m", "ropeconv", "extend", str(src), "-m", "yarn", "-f", "4", "-o",
                             str(out)], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "serve it:" in text
    report = json.loads(subprocess.run([sys.executable, "-m", "ropeconv", "check", str(out), "--json"],
                                       capture_output=True, text=True, env=env).stdout)
    printed = [line.strip() for line in text.splitlines()]
    for line in report["launch"]:  # the same commands, each whole on one line
        assert line["command"] in printed, (line["command"], text)
        assert str(out) in line["command"]  # the real output path, not a placeholder
    assert max(len(line) for line in text.splitlines()) > 80  # some command is longer than the terminal
    assert "required for the full context" in text  # Ollama's num_ctx line is needed


def test_check_on_a_gguf_shows_its_engines_and_serve_lines(tmp_path):
    src = write_gguf(tmp_path / "m.gguf")
    rc, out, err = cli("check", src, "--json")
    data = json.loads(out)
    assert [row["name"] for row in data["engines"]] == ["llama.cpp", "Ollama"]
    # neither engine's runtime runs in the default suite: the rows say so, as check does for TGI and exllama
    assert {row["inv_freq"] for row in data["engines"]} == {"as intended (read, not run)"}
    assert {line["engine"] for line in data["launch"]} == {"llama.cpp", "Ollama"}
    assert f"llama-server -m {src} -c 4096" in [line["command"] for line in data["launch"]]
    rc, out, err = cli("check", src)
    assert rc == 0 and "serve it:" in out and "Ollama" in out


def test_extend_error_is_exactly_one_line(tmp_path):
    """stderr used to start with an empty line (rich's progress bar stopping on a non-terminal)."""
    src = write_model(tmp_path / "m")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("x")
    result = subprocess.run([sys.executable, "-m", "ropeconv", "extend", str(src), "-m", "yarn", "-f", "4", "-o",
                             str(tmp_path / "out")], capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")


# -- 4. GGUF metadata of the wrong type ----------------------------------------------------------------------

@pytest.mark.parametrize("kv, key", [
    ({"{arch}.rope.scaling.yarn_beta_fast": ("STRING", "fast")}, "yarn_beta_fast"),
    ({"{arch}.rope.scaling.yarn_log_multiplier": ("STRING", "x")}, "yarn_log_multiplier"),
    ({"{arch}.rope.scaling.original_context_length": ("ARRAY", list(range(1000)), "UINT32")}, "original_context_length"),
    ({"{arch}.context_length": ("ARRAY", list(range(1000)), "UINT32")}, "context_length"),
    ({"split.count": ("STRING", "x")}, "split.count"),
])
def test_wrong_typed_gguf_keys_are_one_line_exit_2_in_inspect_and_check(tmp_path, kv, key):
    yarn = {"{arch}.rope.scaling.type": ("STRING", "yarn"), "{arch}.rope.scaling.factor": ("FLOAT32", 4.0),
            "{arch}.rope.scaling.original_context_length": ("UINT32", 1024)}
    src = write_gguf(tmp_path / "m.gguf", kv={**yarn, **kv}, ctx=None if "{arch}.context_length" in kv else 4096)
    errors = set()
    for command in ("inspect", "check"):
        rc, out, err = cli(command, src)
        lines = [line for line in err.splitlines() if line.strip()]
        assert rc == 2 and len(lines) == 1 and key in lines[0] and "internal error" not in err, err
        errors.add(lines[0])
    assert len(errors) == 1  # inspect and check read the file one way


# -- 5. inspect's wording ------------------------------------------------------------------------------------

def test_inspect_explains_shape_sample_and_gguf_key(tmp_path):
    both = {**CONFIG, "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}, "head_dim": 64}
    rc, out, _ = cli("inspect", write_model(tmp_path / "m", both))
    assert rc == 0 and "the v5 rope_parameters and the legacy" in out and "showing 17 of 32 pairs" in out
    rc, out, _ = cli("inspect", write_gguf(tmp_path / "m.gguf"))
    assert rc == 0 and "(llama.context_length)" in out and "(max_position_embeddings)" not in out
