"""Push: the real huggingface_hub client against the local test server, end to end."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from typer.testing import CliRunner

from ropeconv import hub
from ropeconv.request import RequestError, cli_flag
from ropeconv.cli import app
from ropeconv.errors import EXIT_BAD_INPUT, EXIT_HUB, HubError, RopeconvError

if TYPE_CHECKING:
    from hub_server import HubEnv

# huggingface_hub itself streams LFS uploads with a keyword httpx deprecates: not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")

WEIGHTS = "model.safetensors"


def extend_from_hub(spec: str, out: Path) -> Path:
    """The source's extend output: ropeconv.api.extend when it exists, else the same by hand."""
    try:
        from ropeconv.api import extend
    except ImportError:
        extend = None
    if extend is not None:
        extend(spec, "yarn", factor=4, output=out)
        return out
    source = hub.resolve(spec, need="weights")
    shutil.copytree(source.path, out)
    config = json.loads((out / "config.json").read_text())
    before = {"rope_type": "default", "original_context": config["max_position_embeddings"]}
    config["rope_scaling"] = {"rope_type": "yarn", "factor": 4.0,
                              "original_max_position_embeddings": config["max_position_embeddings"]}
    config["max_position_embeddings"] *= 4
    (out / "config.json").write_text(json.dumps(config, indent=2))
    (out / "ropeconv.json").write_text(json.dumps({
        "source": source.to_dict(), "method": "yarn", "factor": 4.0, "params": {}, "before": before,
        "after": {"rope_type": "yarn", "served_context": config["max_position_embeddings"]}}))
    return out


@pytest.fixture
def extended(hub_env, hub_source, tmp_path) -> Path:
    return extend_from_hub(hub_source[0], tmp_path / "tiny-llama-yarn-x4")


def counters(env: HubEnv) -> dict:
    return dict(env.server.state.stats)


def grew(env: HubEnv, before: dict, key: str) -> int:
    return env.server.state.stats.get(key, 0) - before.get(key, 0)


def head(env: HubEnv, repo_id: str, ref: str = "main") -> str | None:
    repo = env.server.state.repos.get(repo_id)
    return repo.refs.get(ref) if repo else None


def download(env: HubEnv, repo_id: str, revision: str, into: Path) -> Path:
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(repo_id, revision=revision, endpoint=env.url, cache_dir=into))


def same_tree(local: Path, remote: Path) -> None:
    """Every local file is on the Hub byte for byte (and nothing else but .gitattributes)."""
    mine = {p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()}
    theirs = {p.relative_to(remote).as_posix() for p in remote.rglob("*") if p.is_file()} - {".gitattributes"}
    assert mine == theirs
    for rel in mine:
        assert (local / rel).read_bytes() == (remote / rel).read_bytes(), rel


def test_push_end_to_end_with_server_side_copy_then_lfs_upload(hub_env, hub_source, extended, tmp_path):
    repo_id, sha, local = hub_source
    record = json.loads((extended / "ropeconv.json").read_text())
    assert record["source"]["repo_id"] == repo_id and record["source"]["sha"] == sha
    weights = (extended / WEIGHTS).stat().st_size
    tokenizer = (extended / "tokenizer.json").stat().st_size
    assert weights > 10 * 2**20 and tokenizer > 10 * 2**20

    # 1. weights unchanged and both ends on the Hub: the big files are copied server-side.
    before = counters(hub_env)
    copied = hub.push_folder(extended, "alice/tiny-llama-yarn")
    sent_with_copy = grew(hub_env, before, "lfs_put_bytes")
    assert copied["copied_server_side"]["files"] == 2  # the weights and the 10.5 MB tokenizer.json
    assert copied["copied_server_side"]["bytes"] == weights + tokenizer
    assert grew(hub_env, before, "duplicated_bytes") == weights + tokenizer
    assert sent_with_copy == 0  # no LFS upload at all: only config/card/record went, inline
    assert copied["url"] == copied["commit_url"] and copied["commit_url"].endswith(copied["commit_sha"])
    assert copied["card"] == "written"
    same_tree(extended, download(hub_env, "alice/tiny-llama-yarn", copied["commit_sha"], tmp_path / "dl-copy"))

    # 2. the same folder with copies off: everything goes up, the >10 MB files through LFS.
    before = counters(hub_env)
    uploaded = hub.push_folder(extended, "alice/tiny-llama-yarn-upload", server_copy=False)
    sent_without_copy = grew(hub_env, before, "lfs_put_bytes")
    assert sent_without_copy == weights + tokenizer and grew(hub_env, before, "lfs_put_files") == 2
    assert uploaded["copied_server_side"]["files"] == 0 and uploaded["uploaded"]["files"] >= 5
    print(f"\nupload with server-side copy: {sent_with_copy} LFS bytes; without: {sent_without_copy} LFS bytes")

    same_tree(extended, download(hub_env, "alice/tiny-llama-yarn-upload", uploaded["commit_sha"], tmp_path / "dl"))
    card = (extended / "README.md").read_text()  # written for the destination repo
    assert 'from_pretrained("alice/tiny-llama-yarn-upload"' in card and "Tiny Llama" in card and "were not changed or fine-tuned" in card
    # the card replaced the hard link to the cache: the source's cached card is untouched
    cached = hub.resolve(repo_id).path / "README.md"
    assert cached.read_text() == (local / "README.md").read_text()


def test_rerunning_a_push_sends_nothing_and_makes_no_commit(hub_env, extended):
    first = hub.push_folder(extended, "alice/rerun")
    before = counters(hub_env)
    again = hub.push_folder(extended, "alice/rerun")
    assert again["no_changes"] and again["commit_sha"] == first["commit_sha"]
    assert grew(hub_env, before, "commits") == 0 and grew(hub_env, before, "lfs_put_bytes") == 0


def test_create_pr_leaves_main_alone(hub_env, extended):
    hub.push_folder(extended, "alice/pr-target", commit_message="first version")
    main_before = head(hub_env, "alice/pr-target")
    (extended / "review-notes.txt").write_text("a change for review\n")
    result = hub.push_folder(extended, "alice/pr-target", create_pr=True)
    assert result["pr_url"] and result["url"] == result["pr_url"]
    number = result["pr_url"].rsplit("/discussions/", 1)[1]
    assert head(hub_env, "alice/pr-target") == main_before
    pr_commit = hub_env.server.state.repos["alice/pr-target"].commits[head(hub_env, "alice/pr-target",
                                                                          f"refs/pr/{number}")]
    assert "review-notes.txt" in pr_commit.files


def test_revision_pushes_to_a_new_branch(hub_env, extended, tmp_path):
    hub.push_folder(extended, "alice/branchy")
    main_before = head(hub_env, "alice/branchy")
    (extended / "review-notes.txt").write_text("only on the branch\n")
    result = hub.push_folder(extended, "alice/branchy", revision="long-context")
    assert result["revision"] == "long-context"
    assert head(hub_env, "alice/branchy") == main_before
    assert head(hub_env, "alice/branchy", "long-context") == result["commit_sha"]
    same_tree(extended, download(hub_env, "alice/branchy", "long-context", tmp_path / "dl"))
    assert hub.push_folder(extended, "alice/branchy", revision="long-context")["no_changes"]  # branch exists: fine


def test_create_pr_with_a_revision_is_refused_before_any_request(hub_env, extended):
    before = counters(hub_env)
    with pytest.raises(RopeconvError) as err:
        hub.push_folder(extended, "alice/x", create_pr=True, revision="dev")
    assert err.value.exit_code == EXIT_BAD_INPUT and grew(hub_env, before, "requests") == 0


def uploads_started(env: HubEnv, before_log: int) -> list:
    return [e for e in env.server.state.log[before_log:]
            if "/preupload/" in e[1] or "/lfs/" in e[1] or "/commit/" in e[1] or "/__lfs/" in e[1]]


def test_bad_token_is_refused_before_uploading(hub_env, extended):
    mark = len(hub_env.server.state.log)
    with pytest.raises(HubError) as err:
        hub.push_folder(extended, "alice/bad-token", token="hf_" + "x" * 30)
    line = str(err.value)
    assert "refused the token" in line and "hf auth login" in line and "x" * 30 not in line
    assert not uploads_started(hub_env, mark) and "alice/bad-token" not in hub_env.server.state.repos


def test_read_only_token_or_foreign_namespace_is_refused_before_uploading(hub_env, extended, monkeypatch):
    mark = len(hub_env.server.state.log)
    monkeypatch.setenv("HF_TOKEN", hub_env.server.read_token)
    with pytest.raises(HubError) as read_only:
        hub.push_folder(extended, "bob/model")
    assert "read-only" in str(read_only.value) and "write access" in str(read_only.value)
    monkeypatch.setenv("HF_TOKEN", hub_env.server.write_token)
    with pytest.raises(HubError) as foreign:
        hub.push_folder(extended, "someone-else/model")
    assert "cannot write to 'someone-else'" in str(foreign.value)
    assert hub.push_folder(extended, "ropeconv-org/model")["commit_sha"]  # alice's organization is fine
    assert not [e for e in uploads_started(hub_env, mark) if "ropeconv-org" not in e[1]]


def test_no_token_at_all(hub_env, extended, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(HubError) as err:
        hub.push_folder(extended, "alice/no-token")
    assert "needs a Hugging Face token" in str(err.value) and "--token" in str(err.value)


def test_a_server_that_fails_twice_then_recovers(hub_env, extended):
    state = hub_env.server.state
    state.fail(r"^/api/whoami-v2$", times=2)
    state.fail(r"^/api/models/alice/flaky/commit/", times=2)
    before = counters(hub_env)
    result = hub.push_folder(extended, "alice/flaky")
    assert grew(hub_env, before, "faults_503") == 4 and grew(hub_env, before, "commits") == 1
    assert head(hub_env, "alice/flaky") == result["commit_sha"]


def test_a_failed_push_keeps_the_folder_and_a_rerun_completes_it(hub_env, extended):
    state = hub_env.server.state
    state.fail(r"^/api/models/alice/resume/commit/", times=100, status=500)
    files_before = sorted(p.relative_to(extended).as_posix() for p in extended.rglob("*"))
    before = counters(hub_env)
    with pytest.raises(HubError) as err:
        hub.push_folder(extended, "alice/resume", server_copy=False)
    assert "answered 500" in str(err.value) and "tried 6 times" in str(err.value)
    assert "running the same command again resumes" in str(err.value)
    uploaded_once = grew(hub_env, before, "lfs_put_bytes")
    assert uploaded_once > 20 * 2**20  # the big files reached the server before the commit failed
    assert sorted(p.relative_to(extended).as_posix() for p in extended.rglob("*")) == files_before
    state.faults.clear()
    before = counters(hub_env)
    result = hub.push_folder(extended, "alice/resume", server_copy=False)
    assert grew(hub_env, before, "lfs_put_bytes") == 0  # the Hub already stores them: nothing re-sent
    assert head(hub_env, "alice/resume") == result["commit_sha"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_server_on_push(hub_env, extended, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    result = CliRunner().invoke(app, ["push", str(extended), "alice/unreachable"])
    assert result.exit_code == EXIT_HUB
    assert "cannot reach the Hub" in result.output and "Traceback" not in result.output


def test_cli_push_json_and_human_output(hub_env, extended):
    runner = CliRunner()
    result = runner.invoke(app, ["push", str(extended), "alice/cli-model", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["url"].startswith(hub_env.url) and report["repo_id"] == "alice/cli-model"
    (extended / "review-notes.txt").write_text("new\n")
    result = runner.invoke(app, ["push", str(extended), "alice/cli-model", "--create-pr",
                                 "--commit-message", "Add notes"])
    assert result.exit_code == 0 and "opened pull request:" in result.output and "/discussions/" in result.output
    bad = runner.invoke(app, ["push", str(extended / "missing"), "alice/cli-model"])
    assert bad.exit_code == EXIT_BAD_INPUT and "does not exist" in bad.output


def test_the_token_appears_nowhere(hub_env, extended, tmp_path):
    """Every output and every file written (locally and on the server) is free of the token."""
    secret = "hf_S3cretWr1teT0ken" + "q" * 16
    bad = "hf_Wr0ngT0ken" + "z" * 20
    hub_env.server.state.add_token(secret, "alice", "write", orgs=("ropeconv-org",))
    env = hub_env.env(HF_TOKEN="")
    env.pop("HF_TOKEN")
    command = [sys.executable, "-m", "ropeconv", "push", str(extended)]
    runs = [
        subprocess.run(command + ["alice/secret-push", "--token", secret], env=env, capture_output=True, text=True),
        subprocess.run(command + ["alice/secret-push", "--token", secret, "--json", "--create-pr"], env=env,
                       capture_output=True, text=True),
        subprocess.run(command + ["alice/secret-push", "--token", bad, "--debug"], env=env, capture_output=True,
                       text=True),
        subprocess.run(command + ["someone-else/x", "--token", secret, "--debug"], env=env, capture_output=True,
                       text=True),
        subprocess.run(command + ["alice/secret-push"], env=hub_env.env(HF_TOKEN=secret), capture_output=True,
                       text=True),
    ]
    assert [r.returncode for r in runs] == [0, 0, EXIT_HUB, EXIT_HUB, 0], [r.stderr[-500:] for r in runs]
    assert "pushed to alice/secret-push@main" in runs[0].stdout
    for run in runs:
        for text in (run.stdout, run.stderr):
            assert secret not in text and bad not in text
    written = [p for root in (tmp_path, hub_env.server.state.data_dir) for p in Path(root).rglob("*")
               if p.is_file()]
    assert len(written) > 10
    for path in written:
        data = path.read_bytes()
        assert secret.encode() not in data and bad.encode() not in data, path
    assert not (hub_env.home / "token").exists()


def test_when_the_hub_cannot_copy_across_repos_the_files_are_uploaded(hub_env, extended):
    hub_env.server.state.fail(r"/lfs-files/duplicate$", times=1, status=403)  # e.g. another storage region
    before = counters(hub_env)
    result = hub.push_folder(extended, "alice/no-copy")
    assert result["copied_server_side"]["files"] == 0 and "uploaded instead" in result["note"]
    assert grew(hub_env, before, "lfs_put_bytes") > 20 * 2**20 and grew(hub_env, before, "faults_403") == 1


def test_write_permission_rules():
    user = {"name": "alice", "orgs": [{"name": "team", "roleInOrg": "write"}, {"name": "readers", "roleInOrg": "read"}],
            "auth": {"accessToken": {"role": "write"}}}
    assert hub.write_permission_problem(user, "alice/m") is None
    assert hub.write_permission_problem(user, "team/m") is None
    assert "read access" in hub.write_permission_problem(user, "readers/m")
    assert "neither" in hub.write_permission_problem(user, "other/m")
    assert hub.write_permission_problem(user, "other/m", create_pr=True) is None
    scoped = {"name": "alice", "auth": {"accessToken": {"role": "fineGrained", "fineGrained": {"scoped": [
        {"entity": {"type": "model", "name": "alice/m"}, "permissions": ["repo.content.read", "repo.write"]}]}}}}
    assert hub.write_permission_problem(scoped, "alice/m") is None
    assert "fine-grained" in hub.write_permission_problem(scoped, "alice/other")
    read = {"name": "alice", "auth": {"accessToken": {"role": "read"}}}
    assert "read-only" in hub.write_permission_problem(read, "alice/m", create_pr=True)


def test_a_pull_request_to_someone_elses_repo(hub_env, extended, monkeypatch):
    hub.push_folder(extended, "alice/shared")
    carol = "hf_carol" + "c" * 24
    hub_env.server.state.add_token(carol, "carol", "write")
    monkeypatch.setenv("HF_TOKEN", carol)
    (extended / "review-notes.txt").write_text("carol's suggestion\n")
    result = hub.push_folder(extended, "alice/shared", create_pr=True)
    assert "/alice/shared/discussions/" in result["pr_url"] and result["user"] == "carol"
    with pytest.raises(HubError) as err:
        hub.push_folder(extended, "alice/not-there", create_pr=True)
    assert "was not found" in str(err.value)


def test_extend_push_to(hub_env, hub_source, tmp_path):
    """`extend … --push-to` resolves the Hub source, writes the output and pushes it with server-side copies."""
    result = CliRunner().invoke(app, ["extend", hub_source[0], "--method", "yarn", "--factor", "4",
                                      "-o", str(tmp_path / "out"), "--push-to", "alice/via-extend", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["source"]["sha"] == hub_source[1]
    push = report["push"]
    assert push["url"] == push["commit_url"] and push["copied_server_side"]["files"] == 2
    assert head(hub_env, "alice/via-extend") == push["commit_sha"]


def test_pushed_records_carry_no_local_paths(hub_env, tmp_path):
    """ropeconv.json keeps the local source path on disk; what is pushed names only the folder."""
    from conftest import build_tiny
    from ropeconv import api

    src = build_tiny("llama", tmp_path / "private-home" / "my-model")
    out = tmp_path / "private-home" / "my-model-yarn"
    api.extend(str(src), "yarn", factor=2, output=out)
    assert str(src) in (out / "ropeconv.json").read_text()
    pushed = hub.push_folder(out, "alice/local-paths", card=False)
    got = download(hub_env, "alice/local-paths", pushed["commit_sha"], tmp_path / "dl")
    text = (got / "ropeconv.json").read_text()
    assert str(tmp_path) not in text and '"path": "my-model"' in text
    assert json.loads(text)["base"] == json.loads((out / "ropeconv.json").read_text())["base"]


@pytest.mark.parametrize("kwargs,message", [
    ({"token": ""}, "--token is empty"), ({"revision": ""}, "--revision is empty"),
])
def test_empty_token_or_revision_is_bad_input(hub_env, tmp_path, kwargs, message):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    with pytest.raises(RequestError) as err:  # the library names the field; the CLI spells it --token
        hub.push_folder(tmp_path / "m", "alice/empty-args", **kwargs)
    assert err.value.exit_code == 2
    assert err.value.worded(cli_flag).problem == message


def test_pushing_a_missing_or_empty_folder_is_bad_input(hub_env, tmp_path):
    with pytest.raises(RopeconvError, match="does not exist"):
        hub.push_folder(tmp_path / "nope", "alice/x")
    (tmp_path / "file").write_text("x")
    with pytest.raises(RopeconvError, match="is not a folder"):
        hub.push_folder(tmp_path / "file", "alice/x")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RopeconvError, match="holds no files to push"):
        hub.push_folder(tmp_path / "empty", "alice/x")
