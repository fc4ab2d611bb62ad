#!/usr/bin/env bash
# Store benchmark: fill a new SQLite store with synthetic records
# (bench/gen: Zipf-like senders, recipients and domains, realistic statuses,
# reply codes, sizes, TLS, sessions, Postfix deliveries, some transcripts),
# then time what the UI and the trace need.
#
#   bench/store.sh [RECORDS] [PER_DAY]      (defaults 10000000 300000)
#
# Prints the insert rate (bulk Load, and Handle with many concurrent
# callers each waiting for its commit, as the relay does), the p50/p99 of a
# lookup by Message-ID, of a search by sender domain over one day, and of
# the dashboard's aggregates over 24 hours. Targets: >= 50,000 records/s,
# lookups under 5 ms, the dashboard under 1 s.
# For scale it first prints the engine's ceiling: the same record bodies
# inserted one row per record into a bare SQLite table (no index, nothing
# derived), and after the fill the bytes written per record (log, WAL and
# checkpoints together), the store's write amplification.
# The database goes to a temporary directory on disk (TMPDIR to choose).
set -euo pipefail
cd "$(dirname "$0")/.."

n=${1:-10000000}
per_day=${2:-300000}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

go build -o "$out/storebench" ./bench/gen/storebench
"$out/storebench" -db "$out/bench.db" -n "$n" -per-day "$per_day"
