#!/usr/bin/env bash
# Set up everything the tests need, then lint, type-check and run the whole suite.
# Extra arguments go to pytest (e.g. -k whep, -x).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
VENV=${VENV:-.venv}
echo "test: ruff"
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
echo "test: mypy"
"$VENV/bin/mypy"
echo "test: pytest"
exec "$VENV/bin/pytest" -p no:cacheprovider "$@"
