#!/usr/bin/env bash
# Set up and run the gateway with its demo stream: then open http://127.0.0.1:8080/
# Extra arguments go to media-server (e.g. --port 9000, --no-demo, --config FILE).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec "${VENV:-.venv}/bin/media-server" "$@"
