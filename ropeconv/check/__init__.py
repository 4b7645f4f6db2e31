"""`ropeconv check`: portability findings for a model's RoPE config, and their fixes.

What lives where:

- `findings`: `Finding`, `Context`, the `@check` registry (`CHECKS`) and every config check;
- `config`: running the checks on a config or folder (`check_config`, `check_folder`, `counts`);
- `run`: the command as a library call (`run_check`, `exit_code_for`, `list_checks`);
- `fix`: `--fix`, writing the findings' patches to a new folder (`apply_fixes`);
- `gguf`: the checks on a GGUF file's rope metadata (`check_gguf`, `gguf_findings`).

Everything public is importable from `ropeconv.check` itself. Pure Python at import time: no torch,
no transformers.
"""

from __future__ import annotations

from ropeconv.check.findings import (
    CHECKS,
    CONFIG,
    FLOAT_PARAMS,
    NO_LIMIT,
    SEVERITIES,
    TOKENIZER_CONFIG,
    Context,
    Finding,
    check,
)
from ropeconv.check.fix import apply_fixes
from ropeconv.check.gguf import check_gguf, gguf_findings
from ropeconv.check.config import check_config, check_folder, counts
from ropeconv.check.run import exit_code_for, list_checks, run_check

__all__ = [
    "CHECKS", "CONFIG", "FLOAT_PARAMS", "NO_LIMIT", "SEVERITIES", "TOKENIZER_CONFIG", "Context", "Finding",
    "apply_fixes", "check", "check_config", "check_folder", "check_gguf", "counts", "exit_code_for",
    "gguf_findings", "list_checks", "run_check",
]
