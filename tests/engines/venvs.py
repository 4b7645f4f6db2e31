"""Engine environments built from the package index, cached between runs.

Everything lives under `$ROPECONV_ENGINES_CACHE` (default `~/.cache/ropeconv-engines`):

- `torch-<version>/`: one virtual environment WITHOUT the system site packages (the system one holds
  transformers 5), with only torch and numpy. Every transformers 4.x runs on it.
- `transformers-<version>/`: `pip install --target` of that transformers release and its own
  dependencies (tokenizers, huggingface-hub of its day); put first on PYTHONPATH of the torch venv.
- `dist/`: downloaded distributions (the llama-cpp-python source distribution, engine wheels).

A folder counts only once its `.complete` marker exists, so an interrupted build is redone; a lock
file keeps two test processes from building the same one at once.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from contextlib import contextmanager
from pathlib import Path

TORCH_VERSION = "2.13.0"  # the CPU build the project pins (a local wheel: pip never pulls a CUDA one)
MARKER = ".complete"


def cache_root() -> Path:
    root = os.environ.get("ROPECONV_ENGINES_CACHE")
    base = Path(root) if root else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ropeconv-engines"
    base.mkdir(parents=True, exist_ok=True)
    return base


class BuildError(RuntimeError):
    """An engine environment could not be built (the package index is unreachable, a release is gone)."""


@contextmanager
def _locked(name: str):
    lock = cache_root() / f".{name}.lock"
    with open(lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(cmd: list[str], what: str, env: dict | None = None) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise BuildError(f"{what} failed ({' '.join(cmd[:4])} …):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")


def _build(folder: Path, build) -> Path:
    if (folder / MARKER).exists():
        return folder
    with _locked(folder.name):
        if (folder / MARKER).exists():
            return folder
        shutil.rmtree(folder, ignore_errors=True)
        build(folder)
        (folder / MARKER).write_text("ok\n")
    return folder


def torch_venv() -> Path:
    """The python of a venv holding torch only (no system site packages)."""

    def build(folder: Path) -> None:
        _run([sys.executable, "-m", "venv", str(folder)], "creating the torch venv")
        _run([str(folder / "bin" / "python"), "-m", "pip", "install", "-q", f"torch=={TORCH_VERSION}", "numpy"],
             f"installing torch {TORCH_VERSION}")

    return _build(cache_root() / f"torch-{TORCH_VERSION}", build) / "bin" / "python"


def transformers_target(version: str) -> Path:
    """A folder holding transformers==version and its dependencies (for PYTHONPATH)."""

    def build(folder: Path) -> None:
        py = torch_venv()
        # torch is not a dependency of transformers, so it is never pulled into the target
        _run([str(py), "-m", "pip", "install", "-q", "--target", str(folder), f"transformers=={version}"],
             f"installing transformers {version}")

    return _build(cache_root() / f"transformers-{version}", build)


def transformers_env(version: str) -> tuple[Path, dict]:
    """(python, environment) that imports transformers==version (torch from the torch venv)."""
    target = transformers_target(version)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(PYTHONPATH=str(target), HF_HUB_OFFLINE="1", TRANSFORMERS_NO_ADVISORY_WARNINGS="1",
               TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    return torch_venv(), env


def download(spec: str, *, sdist: bool = False) -> Path:
    """`pip download --no-deps` of one distribution into dist/ (cached); returns the file."""
    dist = cache_root() / "dist"
    dist.mkdir(exist_ok=True)
    name = spec.split("==")[0].replace("-", "_").lower()
    version = spec.split("==")[1]

    def find() -> Path | None:
        for path in dist.iterdir():
            norm = path.name.replace("-", "_").lower()
            if norm.startswith(f"{name}_{version}") and (path.suffix in (".whl", ".gz")):
                return path
        return None

    found = find()
    if found:
        return found
    with _locked(f"dist-{name}"):
        found = find()
        if found:
            return found
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(dist)]
        if sdist:
            # the source archive of this one package (":all:" would also build its build tools from source)
            cmd += ["--no-binary", spec.split("==")[0]]
        _run(cmd + [spec], f"downloading {spec}")
        found = find()
        if not found:
            raise BuildError(f"pip download {spec} left no file in {dist}")
        return found


def unpacked(archive: Path, members: tuple[str, ...] = ()) -> Path:
    """The archive unpacked beside itself (only `members` prefixes when given), cached."""

    def build(folder: Path) -> None:
        folder.mkdir(parents=True)
        if archive.suffix == ".whl":
            with zipfile.ZipFile(archive) as zf:
                names = [n for n in zf.namelist() if not members or n.startswith(members)]
                zf.extractall(folder, names)
        else:
            with tarfile.open(archive) as tf:
                picked = [m for m in tf.getmembers() if not members or m.name.split("/", 1)[-1].startswith(members)]
                tf.extractall(folder, picked, filter="data")

    stem = archive.name.removesuffix(".tar.gz").removesuffix(".whl")
    return _build(cache_root() / f"unpacked-{stem}", build)


LLAMA_CPP_PYTHON = "0.3.36"  # its vendor/llama.cpp holds the converter and gguf-py of that release
CONVERTER_TRANSFORMERS = "4.57.6"  # vendor/llama.cpp/requirements/requirements-convert_hf_to_gguf.txt


def llama_cpp_converter() -> tuple[list[str], dict]:
    """(command prefix, environment) running llama.cpp's own convert_hf_to_gguf.py.

    The script and its `conversion/` package and `gguf-py` come from the llama-cpp-python source
    distribution (nothing is compiled). It runs as llama.cpp's requirements-convert_hf_to_gguf.txt asks:
    with transformers 4.57.6 (it reads every config through AutoConfig(...).to_dict(), and transformers 5
    moves rope_theta and the scaling into rope_parameters, where the converter does not look), torch from
    the torch venv, and sentencepiece, which it imports first for every Llama vocabulary, from a cached
    --target folder.
    """
    sdist = download(f"llama-cpp-python=={LLAMA_CPP_PYTHON}", sdist=True)
    root = unpacked(sdist, ("vendor/llama.cpp/convert_hf_to_gguf.py", "vendor/llama.cpp/conversion/",
                            "vendor/llama.cpp/gguf-py/"))
    script = next(root.glob("*/vendor/llama.cpp/convert_hf_to_gguf.py"))

    def build(folder: Path) -> None:
        _run([sys.executable, "-m", "pip", "install", "-q", "--target", str(folder), "--no-deps", "sentencepiece"],
             "installing sentencepiece for the converter")

    deps = _build(cache_root() / "converter-deps", build)
    python, env = transformers_env(CONVERTER_TRANSFORMERS)
    env.pop("NO_LOCAL_GGUF", None)
    env["PYTHONPATH"] = os.pathsep.join((str(deps), env["PYTHONPATH"]))
    return [str(python), str(script)], env


SGLANG = "0.5.23"


def sglang_root() -> Path:
    """SGLang's published wheel, only its rotary-embedding package unpacked (no dependencies installed)."""
    wheel = download(f"sglang=={SGLANG}")
    # environ.py (the SGLANG_* settings with their defaults, e.g. the rope cache dtype) is used as shipped
    return unpacked(wheel, ("sglang/srt/layers/rotary_embedding/", "sglang/srt/environ.py",
                            "sglang/srt/utils/hf_transformers/common.py"))


VLLM = "0.33.0"


def vllm_root() -> Path:
    """vLLM's published wheel (336 MB download, cached), only its rotary-embedding package unpacked."""
    wheel = download(f"vllm=={VLLM}")
    return unpacked(wheel, ("vllm/model_executor/layers/rotary_embedding/",))


# The transformers release each engine wheel requires (its METADATA): the engine's runner runs with
# that release, as a server would, not with the one installed here.
ENGINE_TRANSFORMERS = {"vllm": "5.20.2", "sglang": "5.19.0"}


def engine_env(engine: str) -> tuple[Path, dict]:
    """(python, environment) for an engine's runner: torch, and the transformers the wheel requires."""
    import zipfile

    from packaging.requirements import Requirement

    version = ENGINE_TRANSFORMERS[engine]
    wheel = download(f"{engine}=={VLLM if engine == 'vllm' else SGLANG}")
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        lines = archive.read(metadata).decode().splitlines()
    wanted = [Requirement(line.split(":", 1)[1].strip()) for line in lines if line.startswith("Requires-Dist:")]
    spec = next(r.specifier for r in wanted if r.name == "transformers" and not r.marker)
    if version not in spec:
        raise RuntimeError(f"{wheel.name} requires transformers{spec}; ENGINE_TRANSFORMERS says {version}")
    return transformers_env(version)

