#!/usr/bin/env bash
# Install what heatgw needs on a fresh Debian/Ubuntu machine: the system packages the tests and
# the demo run for real (Mosquitto broker, VictoriaMetrics as the InfluxDB-API historian, socat
# for RS-485 pseudo-terminals), then a project venv with heatgw installed in it.
# Idempotent and quick when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
command -v victoria-metrics >/dev/null 2>&1 || need_apt+=(victoria-metrics)
command -v socat >/dev/null 2>&1 || need_apt+=(socat)
command -v prometheus >/dev/null 2>&1 || need_apt+=(prometheus)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "bootstrap: installing ${need_apt[*]} with apt-get" >&2
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
    # The packages enable their own services; ours start private instances on free ports instead.
    for unit in mosquitto victoria-metrics prometheus prometheus-node-exporter; do
        "${sudo_cmd[@]}" systemctl disable --now "$unit" >/dev/null 2>&1 || true
    done
fi

python=${PYTHON:-python3}
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "bootstrap: heatgw needs Python >= 3.11 (found $("$python" --version 2>&1))" >&2; exit 1; }
[ -x .venv/bin/python ] || "$python" -m venv .venv

extras=${HEATGW_EXTRAS:-test,bench,plot}
stamp=".venv/.heatgw-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $extras"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "bootstrap: installing heatgw[$extras] into .venv" >&2
    .venv/bin/python -m pip install -q --upgrade pip >/dev/null
    .venv/bin/python -m pip install -q -e ".[$extras]"
    echo "$want" > "$stamp"
fi
