"""`ropeconv tune` on one study in a real PostgreSQL server: two `--worker` processes and a main run
share the study over `postgresql://USER:PASSWORD@127.0.0.1:PORT/DB`; one worker is killed with
SIGKILL in the middle of a trial (the main run connects with an empty user name and PGUSER); the study still reaches its trial count and the main run writes the
winner. The password shows up nowhere: no stdout or stderr, no file in the output, not tune.json, not
the model card built from it.

The server is Debian's postgresql (initdb, pg_ctl) started on 127.0.0.1 on a free port with
scram-sha-256 password authentication for a user with a password, and removed at teardown. Skipped
only when no `initdb` is installed (.ci/run installs postgresql).

Stubs: none. The model is the tiny random Llama with SmolLM2's tokenizer of test_tune.py (its
perplexities mean nothing; the shared study is what is tested).
"""

from __future__ import annotations

import glob
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from test_tune import tokenized_model  # noqa: F401  (the tiny model with a real tokenizer)

pytest.importorskip("optuna")
pytest.importorskip("psycopg2")

TARGET, SHORT, BUDGET = 512, 128, 12


@dataclass
class Postgres:
    url: str  # postgresql://USER:PASSWORD@127.0.0.1:PORT/DB
    password: str
    log: Path


def _postgres_bin() -> Path | None:
    found = shutil.which("initdb")
    candidates = [found] if found else []
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    for initdb in candidates:
        real = Path(initdb).resolve()
        if (real.parent / "pg_ctl").exists():
            return real.parent
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres():
    bindir = _postgres_bin()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) installed: apt-get install postgresql")
    root = Path(tempfile.mkdtemp(prefix="ropeconv-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # postgres refuses to run as root: the `postgres` system user runs it
        shutil.chown(root, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    os.chmod(root, 0o755)
    data, sockets, log = root / "data", root / "sockets", root / "server.log"
    port, password = _free_port(), "pw-" + secrets.token_hex(12)

    def run(*args: str) -> None:
        subprocess.run([*as_user, *args], check=True, capture_output=True, text=True, cwd=root)

    try:
        run(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth-local=trust",
            "--auth-host=scram-sha-256", "--no-sync")
        run("mkdir", str(sockets))
        run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o",
            f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
        psql = [str(bindir / "psql") if (bindir / "psql").exists() else "psql", "-h", str(sockets), "-p", str(port), "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-c"]
        run(*psql, f"CREATE ROLE tuner LOGIN PASSWORD '{password}'")
        run(*psql, "CREATE DATABASE tunedb OWNER tuner")
        yield Postgres(f"postgresql://tuner:{password}@127.0.0.1:{port}/tunedb", password, log)
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, cwd=root)
        shutil.rmtree(root, ignore_errors=True)


def _popen(args: list[str], env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ropeconv", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "COLUMNS": "200", **(env or {})})


def _running_trial_of(storage, pid: int):
    """A trial the process `pid` is running now (tune marks a trial with its worker when it starts)."""
    from optuna.trial import TrialState

    for study in storage.get_all_studies():
        for trial in storage.get_all_trials(study._study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            if str(trial.user_attrs.get("worker", "")).endswith(f":{pid}"):
                return trial
    return None


def test_workers_and_main_share_a_postgres_study_and_survive_a_killed_worker(postgres, tokenized_model, tmp_path):
    import optuna

    started = time.perf_counter()
    out = tmp_path / "out"
    common = ["tune", str(tokenized_model), "--target-context", str(TARGET), "--budget", str(BUDGET), "--seed", "5",
              "--storage", postgres.url, "--device", "cpu", "--dtype", "float32", "--short-length", str(SHORT)]
    workers = [_popen([*common, "--worker"]) for _ in range(2)]
    # the main run names no user (libpq takes PGUSER): a password after an empty user is masked too
    no_user = postgres.url.replace("postgresql://tuner:", "postgresql://:")
    main = _popen([*common[:common.index(postgres.url)], no_user, *common[common.index(postgres.url) + 1:],
                   "-o", str(out)], env={"PGUSER": "tuner"})
    storage = optuna.storages.RDBStorage(postgres.url.replace("postgresql://", "postgresql+psycopg2://"))
    victim, killed_trial, deadline = workers[0], None, time.time() + 90
    while killed_trial is None and time.time() < deadline and victim.poll() is None:
        killed_trial = _running_trial_of(storage, victim.pid)
        if killed_trial is None:
            time.sleep(0.01)
    assert killed_trial is not None, "the worker never ran a trial"
    victim.send_signal(signal.SIGKILL)
    streams = [victim.communicate()]
    streams += [process.communicate(timeout=240) for process in (workers[1], main)]
    assert victim.returncode == -signal.SIGKILL
    assert workers[1].returncode == 0, streams[1][1][-2000:]
    assert main.returncode == 0, streams[2][1][-3000:]

    document = json.loads((out / "tune.json").read_text())
    states = {t["number"]: t["state"] for t in document["trials"]}
    assert sum(state in ("complete", "pruned") for state in states.values()) >= BUDGET  # the count was reached
    assert states[killed_trial.number] == "running"  # left by the killed worker, not counted
    assert len({t["worker"] for t in document["trials"] if t["worker"]}) >= 2  # one study, several processes
    assert (out / "config.json").is_file() and (out / "tune.png").is_file()
    assert document["best"]["number"] in states and document["study"]["storage"].startswith("postgresql")

    # the password is nowhere: processes' output, every file of the output, the model card
    from ropeconv.card import build_card, tune_of_folder

    texts = [text for pair in streams for text in pair]
    files = [path.read_bytes().decode("utf-8", "replace") for path in out.rglob("*") if path.is_file()]
    assert not [text[:200] for text in files if ".ropeconv-tmp-" in text]  # no temporary path written anywhere
    texts += files
    texts.append(str(build_card(json.loads((out / "ropeconv.json").read_text()), name="out",
                                tune=tune_of_folder(out, document))))
    assert "in postgresql://:***@127.0.0.1" in streams[2][1]  # the main run says where the study is, masked
    assert not [text[:200] for text in texts if postgres.password in text]
    print(f"postgres study: {len(states)} trials, {time.perf_counter() - started:.1f} s")
