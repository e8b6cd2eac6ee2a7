#!/usr/bin/env bash
# Runs an example federation: one aggregator and two collaborators (col1,
# col2) over mTLS on 127.0.0.1, every process bounded by a timeout.
#
#   run_example_federation.sh AGGREGATOR COLLABORATOR CERT_DIR [ROUNDS]
#
# AGGREGATOR is run as `AGGREGATOR CERT_DIR 0 ROUNDS col1 col2` and must print
# "aggregator listening on port N"; COLLABORATOR as
# `COLLABORATOR CERT_DIR NAME PORT`. Used for the C++ (examples/cpp) and Go
# (examples/go) examples, and for mixing them. Exits non-zero when any
# process fails or runs too long.
set -uo pipefail
agg="$1" col="$2" certs="$3" rounds="${4:-3}"
limit=60
work="$(mktemp -d)"
out="$work/aggregator.log"
trap 'rm -rf "$work"; [[ -n "${agg_pid:-}" ]] && kill "$agg_pid" 2>/dev/null' EXIT

timeout "$limit" "$agg" "$certs" 0 "$rounds" col1 col2 >"$out" 2>&1 &
agg_pid=$!
port=""
for _ in $(seq 1 200); do
  port="$(sed -n 's/^aggregator listening on port \([0-9]*\)$/\1/p' "$out")"
  [[ -n "$port" ]] && break
  if ! kill -0 "$agg_pid" 2>/dev/null; then break; fi
  sleep 0.1
done
if [[ -z "$port" ]]; then
  echo "run_example_federation: the aggregator did not report its port:" >&2
  cat "$out" >&2
  exit 1
fi

status=0
pids=()
for name in col1 col2; do
  timeout "$limit" "$col" "$certs" "$name" "$port" >"$work/$name.log" 2>&1 &
  pids+=($!)
done
for pid in "${pids[@]}"; do
  wait "$pid" || status=1
done
wait "$agg_pid" || status=1
agg_pid=""
for name in col1 col2; do sed "s/^/[$name] /" "$work/$name.log"; done
sed 's/^/[aggregator] /' "$out"
if [[ $status -ne 0 ]]; then
  echo "run_example_federation: FAILED" >&2
  exit 1
fi
grep -q "federation finished after $rounds rounds" "$out" || { echo "run_example_federation: no final round" >&2; exit 1; }
echo "run_example_federation: $rounds rounds, 2 collaborators: ok"
