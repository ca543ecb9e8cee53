#!/usr/bin/env bash
# The test command: installs what is missing, then runs the whole suite (real broker, real
# time-series database and the simulator on loopback). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/python -m pytest "$@"
