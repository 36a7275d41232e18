#!/usr/bin/env bash
# Prints the path of a nats-server >= 2.10, installing one under .nats/ if there is none.
# Debian bookworm's own nats-server (2.9.10) lost acknowledged messages when a node was killed;
# trixie's 2.10.27 did not, and its static binary runs on bookworm. So: a nats-server on PATH or in
# .nats/ if it is >= 2.10, else Debian's candidate if that is >= 2.10, else trixie's package from the
# Debian archive, checked against its SHA-256 and unpacked into .nats/ (no root needed).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
local_bin="$root/.nats/usr/sbin/nats-server"
deb_url='http://deb.debian.org/debian/pool/main/n/nats-server/nats-server_2.10.27-1%2bb2_amd64.deb'
deb_sha256='6d913ac987b78734c08537c2adeb1526cf735f216173a9170d94b185fcfe6f8a'

recent_enough() { # nats-server: v2.10.27 -> 2.10 or later
  local v; v="$("$1" --version 2>/dev/null | sed -n 's/.*v\([0-9]*\)\.\([0-9]*\).*/\1 \2/p')"
  [ -n "$v" ] || return 1
  set -- $v
  [ "$1" -gt 2 ] || { [ "$1" -eq 2 ] && [ "$2" -ge 10 ]; }
}

for candidate in "$local_bin" "$(command -v nats-server || true)" /usr/sbin/nats-server; do
  if [ -n "$candidate" ] && [ -x "$candidate" ] && recent_enough "$candidate"; then echo "$candidate"; exit 0; fi
done

candidate_version="$(apt-cache policy nats-server 2>/dev/null | sed -n 's/ *Candidate: \([0-9]*\.[0-9]*\).*/\1/p')"
if [ "$(id -u)" = 0 ] && [ -n "$candidate_version" ] && [ "$(printf '%s\n2.10\n' "$candidate_version" | sort -V | head -1)" = 2.10 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y nats-server >&2
  echo /usr/sbin/nats-server
  exit 0
fi

[ "$(uname -m)" = x86_64 ] || { echo "no nats-server >= 2.10 found; install one (https://nats.io) and put it on PATH" >&2; exit 1; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
for try in 1 2 3; do curl -fsS --max-time 120 -o "$tmp/nats.deb" "$deb_url" && break; [ "$try" = 3 ] && exit 1; sleep 5; done
echo "$deb_sha256  $tmp/nats.deb" | sha256sum -c --quiet - >&2
mkdir -p "$root/.nats"
dpkg-deb -x "$tmp/nats.deb" "$root/.nats"
recent_enough "$local_bin"
echo "$local_bin"
