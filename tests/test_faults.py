"""Real faults while `extend --copy` writes a ~1 GB checkpoint: kill -9, SIGTERM, a full disk, the source
changing under the copy, and two runs racing for one destination. Each asserts what is left behind.

The CLI runs as a real subprocess (signals must reach a real process). Disk full is a real tmpfs mounted
for the test when running as root (else the test falls back to RLIMIT_FSIZE, which also fails the write
with a real error from the kernel). Stubs: none.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from model_files import debris, write_model

pytestmark = pytest.mark.faults

SHARD_BYTES = 256 * 1024 * 1024  # four shards: ~1 GB
SMALL_SHARD_BYTES = 64 * 1024 * 1024  # four shards: 256 MiB, for the tests that need a second checkpoint
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("faults") / "models" / "big"
    write_model(folder, weights_bytes=SHARD_BYTES, shards=4)
    return folder


def fingerprint(folder: Path) -> dict[str, tuple[int, int, str]]:
    """Size, mtime and the hash of each file's first and last MiB (the whole 1 GB would cost seconds)."""
    out = {}
    for path in sorted(folder.iterdir()):
        st = path.stat()
        with open(path, "rb") as f:
            head = f.read(1 << 20)
            f.seek(max(0, st.st_size - (1 << 20)))
            tail = f.read()
        out[path.name] = (st.st_size, st.st_mtime_ns, hashlib.sha256(head + tail).hexdigest())
    return out


def start(src: Path, dest: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ropeconv", "extend", str(src), "-m", "yarn", "-f", "4",
                             "-o", str(dest), "--copy", *extra], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for_partial_copy(dest: Path, proc: subprocess.Popen, timeout: float = 60) -> Path:
    """The temporary folder once a shard is being copied into it (so the kill lands mid-copy)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for tmp in dest.parent.glob(f".{dest.name}.ropeconv-tmp-*"):
            shards = list(tmp.glob("*.safetensors"))
            if shards and any(0 < p.stat().st_size for p in shards):
                return tmp
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.005)
    raise AssertionError("the copy never started")


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def test_kill_9_mid_copy_leaves_no_output_and_the_next_run_cleans_up(big, tmp_path):
    before = fingerprint(big)
    dest = tmp_path / "out"
    proc = start(big, dest)
    wait_for_partial_copy(dest, proc)
    proc.kill()
    proc.wait()
    assert not dest.exists()
    assert len(debris(tmp_path)) == 1  # kill -9 cannot be handled: the temporary folder stays ...
    assert fingerprint(big) == before
    rerun = start(big, dest)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    assert debris(tmp_path) == []  # ... and the next run to the same destination removes it
    assert json.loads((dest / "config.json").read_text())["rope_scaling"]["rope_type"] == "yarn"
    assert sorted(p.stat().st_size for p in dest.glob("*.safetensors")) == sorted(
        (big / p.name).stat().st_size for p in dest.glob("*.safetensors"))


def test_sigterm_mid_copy_is_one_line_and_leaves_nothing(big, tmp_path):
    before = fingerprint(big)
    dest = tmp_path / "out"
    proc = start(big, dest)
    wait_for_partial_copy(dest, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert error_lines(err) == ["error: interrupted"]
    assert not dest.exists() and debris(tmp_path) == [] and fingerprint(big) == before


def test_truncating_the_source_during_the_copy_is_refused(tmp_path):
    src = write_model(tmp_path / "models" / "src", weights_bytes=SMALL_SHARD_BYTES, shards=4)
    dest = tmp_path / "out"
    proc = start(src, dest)
    wait_for_partial_copy(dest, proc)
    victim = src / "model-00004-of-00004.safetensors"  # copied last: truncated before the copy reaches it
    with open(victim, "r+b") as f:
        f.truncate(victim.stat().st_size // 2)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err
    lines = error_lines(err)
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err
    assert not dest.exists() and debris(tmp_path) == []


def test_two_runs_racing_for_one_destination(tmp_path):
    src = write_model(tmp_path / "models" / "src", weights_bytes=SMALL_SHARD_BYTES, shards=4)
    dest = tmp_path / "out"
    procs = [start(src, dest), start(src, dest)]
    results = [p.communicate(timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], results
    loser = next(err for p, (_, err) in zip(procs, results) if p.returncode == 2)
    assert len(error_lines(loser)) == 1 and ("already exists" in loser or "another run" in loser), loser
    assert debris(tmp_path) == []
    assert len(list(dest.glob("*.safetensors"))) == 4 and (dest / "ropeconv.json").is_file()


@pytest.fixture
def small_disk(tmp_path):
    """A 24 MiB filesystem: a real tmpfs when this process may mount one, else None."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() == 0:
        ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)],
                            capture_output=True).returncode == 0
        if ok:
            yield mount
            subprocess.run(["umount", "-l", str(mount)], check=False)
            return
    yield None


def test_disk_full(small_disk, tmp_path):
    src = write_model(tmp_path / "models" / "src", weights_bytes=16 * 1024 * 1024, shards=2)  # 32 MiB
    if small_disk is not None:
        dest = small_disk / "out"
        proc = start(src, dest)
        _, err = proc.communicate(timeout=120)
        parent = small_disk
    else:  # no mount allowed: the kernel refuses writes past RLIMIT_FSIZE (EFBIG) in the child
        dest = tmp_path / "out"
        limit = 24 * 1024 * 1024
        proc = subprocess.Popen([sys.executable, "-m", "ropeconv", "extend", str(src), "-m", "yarn", "-f", "4",
                                 "-o", str(dest), "--copy"], cwd=ROOT, stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: (signal.signal(signal.SIGXFSZ, signal.SIG_IGN),
                                                    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))))
        _, err = proc.communicate(timeout=120)
        parent = tmp_path
    assert proc.returncode == 2, err
    lines = error_lines(err)
    assert len(lines) == 1 and ("disk full" in lines[0] or "could not write" in lines[0]), err
    assert not dest.exists() and debris(parent) == []
    if small_disk is not None:
        assert os.statvfs(small_disk).f_bfree * os.statvfs(small_disk).f_frsize > 20 * 1024 * 1024  # space freed
