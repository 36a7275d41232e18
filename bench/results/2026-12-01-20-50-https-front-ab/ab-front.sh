#!/bin/bash
# Interleaved A/B of two commits (default: before and after the TLS front), 3 runs each side:
# qos1-100 (tcp, tls, wss) and storm-2k (tls). Run from the repository root:
#   bash bench/results/2026-12-01-20-50-https-front-ab/ab-front.sh [A] [B]
set -e
A=${1:-b5ac41e}; B=${2:-2ab479f}
root=$(pwd); work=$(mktemp -d); out=$work/out; mkdir -p $out
for side in a b; do
  c=$([ $side = a ] && echo $A || echo $B)
  git worktree add -q --detach $work/$side $c
  ln -s $root/node_modules $work/$side/node_modules
  (cd $work/$side && npm run -s build:wasm >/dev/null)
done
for run in 1 2 3; do
  for side in a b; do
    cd $work/$side
    echo "=== run $run side $side ($(git rev-parse --short HEAD)) ===" | tee -a $out/log.txt
    timeout 600 node_modules/.bin/tsx bench/run.ts --suite quick --scenario qos1-100,storm-2k --servers hyperhub --runs 1 --no-report >> $out/log.txt 2>&1
    cp $(ls -t bench/results/*-quick.json | head -1) $out/run$run-$side.json
  done
done
cd $root && git worktree remove --force $work/a && git worktree remove --force $work/b
echo "results in $out"
