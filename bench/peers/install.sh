#!/usr/bin/env bash
# Installs what the peer benchmarks need and is missing: mosquitto from Debian (aedes is a devDependency).
set -euo pipefail
if [ ! -x /usr/sbin/mosquitto ]; then
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends mosquitto
fi
[ -d node_modules/aedes ] || npm ci
