#!/usr/bin/env bash
# The whole test suite (CPU only, no network): installs what it needs, then runs pytest.
# The tune study test runs a real PostgreSQL server: Debian's `postgresql` package is installed when
# its server programs are missing and this is a Debian-like machine where we are root (elsewhere the
# test is skipped with that reason).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && ! command -v initdb >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test: installing Debian's postgresql for the tune study test" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
      || echo "test: postgresql could not be installed; its test will be skipped" >&2
  fi
fi
exec "$PYTHON" -m pytest -q "$@"
