#!/usr/bin/env bash
# The whole test suite (CPU only, no network): installs what it needs, then runs pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
exec "$PYTHON" -m pytest -q "$@"
