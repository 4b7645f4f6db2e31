#!/usr/bin/env bash
# The main job end to end on a real model, offline: SmolLM2-135M-Instruct (trained at 8192 tokens)
# is unpacked from its GGUF into a safetensors folder (cached under ~/.cache/ropeconv), extended
# with YaRN ×4 to 32768 tokens, and probed against the original past its trained length.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PYTHON=${PYTHON:-python3}
SOURCE=$("$PYTHON" -m ropeconv.smollm)
OUT=${1:-"$PWD/demo-output/SmolLM2-135M-Instruct-yarn-x4"}
mkdir -p "$(dirname "$OUT")"
"$PYTHON" -m ropeconv inspect "$SOURCE" --method yarn --factor 4
exec "$PYTHON" -m ropeconv extend "$SOURCE" --method yarn --factor 4 -o "$OUT" --force --probe
