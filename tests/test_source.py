"""ropeconv.source: what a MODEL argument is, and the one confinement rule for every file read."""

from __future__ import annotations

import pytest

from model_files import write_model
from ropeconv.errors import RopeconvError
from ropeconv.folder import confined, model_files, read_config
from ropeconv.source import looks_like_path, looks_like_repo_id, resolve


def test_repo_ids_and_paths_are_told_apart_by_what_exists(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert looks_like_repo_id("HuggingFaceTB/SmolLM2-135M") and looks_like_repo_id("org/name@main")
    (tmp_path / "models").mkdir()
    assert looks_like_path("models/SmolLM2") and not looks_like_repo_id("models/SmolLM2")
    for spec in ("./x", "../x", "/x/y", "~/x", "a/b/c", "x.gguf"):
        assert looks_like_path(spec) and not looks_like_repo_id(spec)


def test_a_missing_path_is_refused_without_the_hub(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    with pytest.raises(RopeconvError, match="does not exist"):
        resolve("models/SmolLM2")


def test_control_characters_in_a_model_argument_are_refused():
    with pytest.raises(RopeconvError, match="control characters"):
        resolve("a\nb")


def test_confinement(tmp_path):
    root = write_model(tmp_path / "m")
    (tmp_path / "outside.txt").write_text("secret")
    (root / "in.json").symlink_to("config.json")
    (root / "out.txt").symlink_to(tmp_path / "outside.txt")
    (root / "dir").symlink_to(tmp_path)
    assert confined(root, "in.json") == (root / "config.json").resolve()
    for rel in ("out.txt", "dir/outside.txt", "../outside.txt", "/etc/passwd", "a\x00b"):
        with pytest.raises(RopeconvError):
            confined(root, rel)
    with pytest.raises(RopeconvError, match="outside the model folder"):
        model_files(root)


def test_hugging_face_cache_blobs_are_inside(tmp_path):
    repo = tmp_path / "models--a--b"
    snap, blobs = repo / "snapshots" / "abc", repo / "blobs"
    snap.mkdir(parents=True)
    blobs.mkdir()
    (blobs / "f00d").write_text("{}")
    (snap / "config.json").symlink_to("../../blobs/f00d")
    assert confined(snap, "config.json") == (blobs / "f00d").resolve()
    assert model_files(snap) == ["config.json"]
    (tmp_path / "other").write_text("x")
    (snap / "x").symlink_to("../../../other")
    with pytest.raises(RopeconvError):
        confined(snap, "x")


def test_read_config_refuses_absurd_json(tmp_path):
    root = write_model(tmp_path / "m")
    (root / "config.json").write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(RopeconvError, match="nests deeper"):
        read_config(root)
    (root / "config.json").write_text('{"a": ' + "9" * 5000 + "}")
    with pytest.raises(RopeconvError, match="not valid JSON"):
        read_config(root)


def test_source_does_not_import_the_hub_at_import_time():
    import subprocess
    import sys

    code = "import sys, ropeconv.source; print('ropeconv.hub' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
