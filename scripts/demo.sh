#!/usr/bin/env bash
# The main job end to end on a real model, offline: SmolLM2-135M-Instruct (trained at 8192 tokens)
# is unpacked from its GGUF into a safetensors folder (cached under ~/.cache/ropeconv), extended
# with YaRN ×4 to 32768 tokens, and probed against the original past its trained length: the quick
# probe (4096 and 12288 tokens, both from one 12288-token pass per model) shows the original failing
# past 8192 tokens where the extension stays level, and says how long the full probe would take.
set -euo pipefail
cd "$(dirname "$0")/.."
START=$SECONDS
source scripts/setup.sh
SOURCE=$("$PYTHON" -m ropeconv.smollm)
OUT=${1:-"$PWD/demo-output/SmolLM2-135M-Instruct-yarn-x4"}
mkdir -p "$(dirname "$OUT")"
"$PYTHON" -m ropeconv inspect "$SOURCE" --method yarn --factor 4
status=0
"$PYTHON" -m ropeconv extend "$SOURCE" --method yarn --factor 4 -o "$OUT" --force --probe || status=$?
echo "demo: $((SECONDS - START)) s end to end; the probe's result is in $OUT/probe.json"
exit "$status"
