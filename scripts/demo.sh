#!/usr/bin/env bash
# The demo command: installs what is missing, then runs the simulated station and the gateway
# together with a live terminal view. Extra arguments go to `heatgw demo` (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/heatgw demo "$@"
