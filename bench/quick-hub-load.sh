#!/usr/bin/env bash
# Quick QoS 1 load run against a fresh hub (plain TCP), with the peers' load generator.
# Usage: [TRANSPORT=tcp|tls] [DEVICES=100] [HUB_ARGS=...] bench/quick-hub-load.sh LOADGEN_DIR [extra loadgen args...]   (LOADGEN_DIR holds loadgen.mjs with its deps installed)
set -euo pipefail
cd "$(dirname "$0")/.."
LOADGEN=$1; shift
DATA=$(mktemp -d /tmp/hyperhub-bench-XXXX)
LOG=$DATA.log
node ${NODE_PROF:-} --import tsx src/main.ts --data-dir "$DATA" --host 127.0.0.1 --mqtt-port 18883 --https-port 0 --mqtt-tcp-port 18831 --amqp-port off --log-level warn ${HUB_ARGS:-} >"$LOG" 2>&1 &
HUBPID=$!
trap 'kill -INT $HUBPID 2>/dev/null; wait $HUBPID 2>/dev/null; [ -n "${KEEP_LOG:-}" ] && cp "$LOG" "$KEEP_LOG"; rm -rf "$DATA" "$LOG"' EXIT
for _ in $(seq 100); do grep -q "Trust the hub" "$LOG" && break; sleep 0.1; done
OWNER=$(grep -o 'iothubowner;SharedAccessKey=[^ ]*' "$LOG" | cut -d= -f2-)
HTTPS=$(grep -o 'HTTPS + MQTT/WSS *port [0-9]*' "$LOG" | grep -o '[0-9]*$')
KEY=$(node -e "console.log(Buffer.from('loadgen-test-key-0123456789abcdef').toString('base64'))")
npx tsx bench/provision-devices.ts --https-port "$HTTPS" --owner-key "$OWNER" --count "${DEVICES:-100}" --device-key "$KEY"
if [ "${TRANSPORT:-tcp}" = tls ]; then TARGET="--port 18883 --tls --ca $DATA/tls/ca.pem"; else TARGET="--port 18831"; fi
(cd "$LOADGEN" && LOADGEN_SAS_KEY=$KEY node loadgen.mjs $TARGET --hub localhost --auth-hook auth-sas-example.mjs --broker-pid $HUBPID "$@")
