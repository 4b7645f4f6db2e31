"""Hub sources: `org/name[@rev]` resolved with the real huggingface_hub client against the local test server."""

from __future__ import annotations

import json
import socket
import time
from typing import TYPE_CHECKING

import pytest

from ropeconv import hub
from ropeconv.errors import EXIT_BAD_INPUT, EXIT_HUB, HubError, RopeconvError
from ropeconv.source import resolve as resolve_model

if TYPE_CHECKING:
    from hub_server import HubEnv

# huggingface_hub itself streams LFS uploads with a keyword httpx deprecates: not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")

WEIGHTS = "model.safetensors"


def stats(env: HubEnv) -> dict:
    return dict(env.server.state.stats)


def delta(env: HubEnv, before: dict, key: str) -> int:
    return env.server.state.stats.get(key, 0) - before.get(key, 0)


def test_config_need_fetches_small_files_only(hub_env, hub_source):
    repo_id, sha, local = hub_source
    before = stats(hub_env)
    source = resolve_model(repo_id, need="config")  # through ropeconv.source, as every command does
    assert source.kind == "hub" and source.repo_id == repo_id and source.sha == sha and source.revision == "main"
    names = {p.name for p in source.path.iterdir()}
    assert {"config.json", "generation_config.json", "tokenizer_config.json", "README.md"} <= names
    assert WEIGHTS not in names
    weights = (local / WEIGHTS).stat().st_size
    assert weights > 10 * 2**20
    downloaded = delta(hub_env, before, "download_bytes")
    assert downloaded < (local / "tokenizer.json").stat().st_size + 200_000  # never the weights
    assert json.loads((source.path / "config.json").read_text())["vocab_size"] == 24000
    assert str(source.path).startswith(str(hub_env.home))  # huggingface_hub's cache under HF_HOME


def test_headers_need_reads_only_the_header_bytes(hub_env, hub_source):
    repo_id, sha, local = hub_source
    before = stats(hub_env)
    source = hub.resolve(f"{repo_id}@{sha}", need="headers")
    assert source.revision == sha and source.sha == sha
    assert not (source.path / WEIGHTS).exists()
    header = source.info["safetensors_headers"][WEIGHTS]
    from ropeconv.buffers import read_header

    assert header == read_header(local / WEIGHTS)[0]  # exactly the file's own header
    assert hub.read_safetensors_header(source, WEIGHTS) == header
    assert hub.shard_headers(source) == {WEIGHTS: header}
    fetched = delta(hub_env, before, "download_bytes") - sum(
        (local / n).stat().st_size for n in ("config.json", "generation_config.json", "README.md",
                                             "tokenizer_config.json", "tokenizer.json"))
    assert 0 < fetched <= 100_001  # one ranged read of the shard, not its 12 MB


def test_weights_need_downloads_what_extend_needs_and_pins_the_revision(hub_env, hub_source):
    _, _, local = hub_source
    repo_id = "alice/tiny-llama-history"  # its own repo: the shared source stays as it is
    first = hub_env.server.upload(local, repo_id)
    extra = local.parent / "extra"
    extra.mkdir(exist_ok=True)
    (extra / "notes.txt").write_text("a later commit\n")
    later = hub_env.server.upload(extra, repo_id)
    assert later != first
    pinned = hub.resolve(f"{repo_id}@{first}", need="weights")
    assert pinned.sha == first and not (pinned.path / "notes.txt").exists()
    assert (pinned.path / WEIGHTS).read_bytes() == (local / WEIGHTS).read_bytes()
    latest = hub.resolve(repo_id, need="config")
    assert latest.sha == later and (latest.path / "notes.txt").exists()


def test_offline_uses_the_cache_and_says_what_is_missing(hub_env, hub_source, monkeypatch):
    repo_id, sha, _ = hub_source
    online = hub.resolve(repo_id, need="config")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    requests = stats(hub_env).get("requests", 0)
    cached = hub.resolve(repo_id, need="config")
    assert cached.path == online.path and cached.sha == online.sha and cached.info.get("offline")
    with pytest.raises(HubError) as partial:
        hub.resolve(repo_id, need="weights")
    assert "only partly in the local cache" in str(partial.value) and "HF_HUB_OFFLINE" in str(partial.value)
    with pytest.raises(HubError) as absent:
        hub.resolve("alice/never-downloaded", need="config")
    assert "not in the local cache" in str(absent.value) and absent.value.exit_code == EXIT_HUB
    assert stats(hub_env).get("requests", 0) == requests  # offline means no request at all


@pytest.mark.parametrize("model, expected", [
    ("alice/does-not-exist", "was not found"),
    ("alice/tiny-llama@no-such-branch", "has no revision 'no-such-branch'"),
])
def test_missing_repo_or_revision_is_one_line_with_a_fix(hub_env, hub_source, model, expected):
    with pytest.raises(HubError) as err:
        hub.resolve(model, need="config")
    line = str(err.value)
    assert expected in line and " — " in line and "\n" not in line and err.value.exit_code == EXIT_HUB


def test_private_and_gated_repos(hub_env, hub_source, tmp_path, monkeypatch):
    _, _, local = hub_source
    small = tmp_path / "small"
    small.mkdir()
    (small / "config.json").write_text((local / "config.json").read_text())
    hub_env.server.upload(small, "alice/private-model", private=True)
    hub_env.server.state.create_repo("alice/gated-model", gated=True)
    hub_env.server.upload(small, "alice/gated-model")
    assert hub.resolve("alice/private-model").sha  # the owner sees it
    monkeypatch.setenv("HF_TOKEN", hub_env.server.read_token)  # bob: no access to either
    with pytest.raises(HubError) as private:
        hub.resolve("alice/private-model")
    assert "not found" in str(private.value) and "private" in str(private.value)
    with pytest.raises(HubError) as gated:
        hub.resolve("alice/gated-model")
    assert "gated" in str(gated.value) and "accept its conditions" in str(gated.value)


def test_bad_repo_ids_are_bad_input(hub_env):
    for spec in ("alice/", "alice/x@", "al ice/x"):
        with pytest.raises(RopeconvError) as err:
            hub.resolve(spec)
        assert err.value.exit_code == EXIT_BAD_INPUT


def test_a_server_that_fails_twice_then_recovers(hub_env, hub_source):
    repo_id, sha, _ = hub_source
    hub_env.server.state.fail(r"^/api/models/alice/tiny-llama(/revision/[^/]+)?$", times=2, status=503)
    before = stats(hub_env)
    source = hub.resolve(repo_id)
    assert source.sha and delta(hub_env, before, "faults_503") == 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_server_ends_with_a_clear_message(hub_env, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    start = time.monotonic()
    with pytest.raises(HubError) as err:
        hub.resolve("alice/tiny-llama")
    line = str(err.value)
    assert "cannot reach the Hub" in line and "tried 6 times" in line and "HF_HUB_OFFLINE" in line
    assert time.monotonic() - start < 15


def test_an_unreachable_server_falls_back_to_the_cache(hub_env, hub_source, monkeypatch):
    repo_id, _, _ = hub_source
    online = hub.resolve(repo_id)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    cached = hub.resolve(repo_id)
    assert cached.sha == online.sha and "could not be reached" in cached.info["warnings"][0]


def test_select_files_keeps_one_weight_format():
    files = {"config.json": 10, "model.safetensors": 10**9, "pytorch_model.bin": 10**9, "README.md": 5,
             "original/consolidated.pth": 10**9, "model.gguf": 10**9, "onnx/model.onnx": 10,
             "model.safetensors.index.json": 100, "tokenizer.json": 10**6, "huge.json": 10**9}
    assert hub.select_files(files, "config") == ["README.md", "config.json", "tokenizer.json"]
    assert hub.select_files(files, "headers") == ["README.md", "config.json", "model.safetensors.index.json",
                                                  "tokenizer.json"]
    assert hub.select_files(files, "weights") == ["README.md", "config.json", "huge.json", "model.safetensors",
                                                  "model.safetensors.index.json", "tokenizer.json"]
    only_bin = {"config.json": 10, "pytorch_model.bin": 10**9}
    assert hub.select_files(only_bin, "weights") == ["config.json", "pytorch_model.bin"]


def test_an_invalid_token_on_read(hub_env, hub_source, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_" + "n" * 30)
    with pytest.raises(HubError) as err:
        hub.resolve(hub_source[0])
    assert "refused the token" in str(err.value) and "n" * 30 not in str(err.value)


def test_inspect_of_a_hub_repo_finds_stored_buffers_from_headers_only(hub_env, hub_server, tmp_path):
    """inspect/extend --dry-run of a repo whose weights carry rotary buffers: found from ranged header
    reads, no weight file downloaded."""
    import torch
    from safetensors.torch import load_file, save_file

    from conftest import build_tiny
    from hub_server import upload_folder_as
    from ropeconv import api

    folder = build_tiny("llama", tmp_path / "old-llama")
    state = load_file(folder / "model.safetensors")
    state["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(8)
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    sha = upload_folder_as(hub_server, folder, "alice/old-llama-buffers")
    before = stats(hub_env)
    result = api.inspect(f"alice/old-llama-buffers@{sha}")
    assert [b["name"] for b in result["buffers"]] == ["model.layers.0.self_attn.rotary_emb.inv_freq"]
    report = api.extend("alice/old-llama-buffers", "yarn", factor=2, dry_run=True)
    assert report["buffers"]["changed"] == ["model.layers.0.self_attn.rotary_emb.inv_freq"]
    # two commands, each reading small files and one bounded header range: less than the weights once
    weights = (folder / "model.safetensors").stat().st_size
    assert delta(hub_env, before, "download_bytes") < weights
    assert not list(hub_env.home.rglob("model.safetensors"))
