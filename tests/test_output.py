"""ropeconv.output: the destination rule, the atomic write, and what a failed or killed run leaves behind.

Stubs: none — real folders, real locks, real signals (SIGTERM to this process while a writer runs).
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import threading
from pathlib import Path

import pytest

from model_files import debris, snapshot, write_model
from ropeconv.errors import RopeconvError
from ropeconv.output import FilePlan, check_destination, remove_leftovers, write_model as write_output


@pytest.fixture
def src(tmp_path):
    return write_model(tmp_path / "models" / "base")


def test_destination_rules(src, tmp_path):
    file = tmp_path / "file.txt"
    file.write_text("x")
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "models")
    cases = {
        src: "inside the source", src / "x": "inside the source",
        src.parent: "contains the source", tmp_path: "contains the source",
        file: "is a file", link: "symbolic link", tmp_path / "a\nb": "control characters",
    }
    for dest, why in cases.items():
        with pytest.raises(RopeconvError, match=why):
            check_destination(src, dest, force=True)
    with pytest.raises(RopeconvError, match="already exists"):
        check_destination(src, _non_empty(tmp_path / "full"), force=False)
    check_destination(src, tmp_path / "new" / "deeper" / "out", force=False)  # parents are created later


def _non_empty(folder: Path) -> Path:
    folder.mkdir()
    (folder / "x").write_text("x")
    return folder


def test_a_write_makes_missing_parents_and_removes_them_on_failure(src, tmp_path):
    dest = tmp_path / "a" / "b" / "out"

    def fail(target):
        raise RopeconvError("boom", "nothing")

    with pytest.raises(RopeconvError, match="boom"):
        write_output(src, dest, FilePlan(shard_writers={"model.safetensors": fail}))
    assert not (tmp_path / "a").exists()
    write_output(src, dest, FilePlan(json_files={"config.json": {"model_type": "llama"}}))
    assert json.loads((dest / "config.json").read_text()) == {"model_type": "llama"}


def test_force_replaces_an_output_folder_atomically(src, tmp_path):
    dest = _non_empty(tmp_path / "out")
    before = snapshot(src)
    write_output(src, dest, FilePlan(), force=True)
    assert not (dest / "x").exists() and (dest / "model.safetensors").is_file()
    assert snapshot(src) == before and debris(tmp_path) == []


def test_leftovers_are_removed_unless_a_live_run_holds_them(tmp_path):
    dest = tmp_path / "out"
    stale, live = tmp_path / ".out.ropeconv-tmp-1", tmp_path / ".out.ropeconv-tmp-2"
    stale.mkdir()
    live.mkdir()
    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        removed = remove_leftovers(dest)
    finally:
        os.close(fd)
    assert removed == [stale] and live.exists()
    (tmp_path / ".other.ropeconv-tmp-1").mkdir()  # another destination's folder is not touched
    remove_leftovers(dest)
    assert (tmp_path / ".other.ropeconv-tmp-1").exists() and not live.exists()


def test_sigterm_while_writing_cleans_up_like_ctrl_c(src, tmp_path):
    dest = tmp_path / "out"
    started = threading.Event()

    def slow(target):
        target.write_bytes(b"partial")
        started.set()
        for _ in range(200):
            threading.Event().wait(0.01)

    previous = signal.getsignal(signal.SIGTERM)
    threading.Timer(0.2, lambda: os.kill(os.getpid(), signal.SIGTERM)).start()
    with pytest.raises(KeyboardInterrupt):
        write_output(src, dest, FilePlan(shard_writers={"model.safetensors": slow}))
    assert signal.getsignal(signal.SIGTERM) is previous  # the handler is ropeconv's only while writing
    assert started.is_set() and not dest.exists() and debris(tmp_path) == []


def test_a_truncated_shard_never_lands_under_the_final_name(src, tmp_path):
    with open(src / "model.safetensors", "r+b") as f:
        f.truncate((src / "model.safetensors").stat().st_size - 8)
    for copy in (False, True):
        with pytest.raises(RopeconvError):
            write_output(src, tmp_path / "out", FilePlan(), copy=copy)
        assert not (tmp_path / "out").exists() and debris(tmp_path) == []


def test_a_source_changed_during_the_write_is_refused(src, tmp_path):
    def touch_source(target):
        target.write_bytes((src / "model.safetensors").read_bytes())
        with open(src / "tokenizer_config.json", "a") as f:
            f.write(" ")

    with pytest.raises(RopeconvError, match="source changed"):
        write_output(src, tmp_path / "out", FilePlan(shard_writers={"model.safetensors": touch_source}))
    assert not (tmp_path / "out").exists() and debris(tmp_path) == []


def test_skipped_names_are_not_carried(src, tmp_path):
    for name in (".ropeconv-complete", "probe.json", "tune.json", "tune.png", ".git/HEAD", ".cache/x"):
        (src / name).parent.mkdir(exist_ok=True)
        (src / name).write_text("x")
    (src / "sub").mkdir()
    (src / "sub" / "probe.json").write_text("kept: not the top-level probe record")
    write_output(src, tmp_path / "out", FilePlan())
    names = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert names == ["config.json", "model.safetensors", "sub/probe.json", "tokenizer_config.json"]


def test_a_sources_measurements_stay_behind_unless_they_are_the_outputs_own(src, tmp_path):
    """probe.json, tune.json/png and finetune.json/png measure the folder they sit in: a new output built from
    it does not carry them — except a file the writer names as this output's own measurement (finetune.png,
    drawn for the model being written)."""
    for name in ("probe.json", "tune.json", "tune.png", "finetune.json", "finetune.png"):
        (src / name).write_text("{}")
    write_output(src, tmp_path / "plain", FilePlan())
    assert not {"probe.json", "tune.json", "tune.png", "finetune.json", "finetune.png"} & {
        p.name for p in (tmp_path / "plain").iterdir()}
    write_output(src, tmp_path / "own", FilePlan(own_measurements={"finetune.png"}))
    assert (tmp_path / "own" / "finetune.png").is_file() and not (tmp_path / "own" / "finetune.json").exists()
