#!/usr/bin/env bash
# bench/capture.sh: capture-mode throughput and peak memory, smtplog against
# Mailpit, in the same run on the same disk.
#
# smtp-source sends MESSAGES messages of SIZE bytes with 1 and with 20
# sessions to each server; each server stores to its own fresh SQLite file
# with its default retention (500 messages). Reported: messages per second,
# peak RSS (VmHWM) of the server process, and smtplog/Mailpit ratios.
#
# Both acknowledge a message (250 after the final dot) only once it is
# durable against a crash of the server, without an fsync per message: a
# crash of the server loses nothing acknowledged, a power loss may lose the
# last messages. Mailpit (v1.33.1, internal/smtpd then
# internal/storage.Store) parses the message, commits it in one transaction
# and only then answers "250 2.0.0 Ok: queued as ID"; it prunes to its
# --max (500) once a minute, so during a run it keeps every message.
# smtplog writes the message record with the compressed bytes (and the
# previous connection's session record) to its acknowledgement log beside
# the database before its 250 (one write, no fsync: the same guarantee as
# a commit with synchronous=NORMAL), and inserts them into SQLite with
# what is derived from them (recipients, codes, full text, search terms,
# roll-ups) in a later transaction for many messages at once; every read
# waits for it. It deletes down to --keep (500) each time 31 more have
# arrived; its default --store-sync is NORMAL in capture mode (FULL would
# fsync the log, as the relay does).
#
# Needs: go, smtp-source (Debian package postfix). Mailpit is built from
# the Go module proxy into a temporary directory and never kept.
#
# RUNS=N repeats the whole comparison N times (each run sends to Mailpit,
# then smtplog, with 1 and then 20 sessions, so that both see the same
# machine load) and prints medians and ranges: on a shared machine, repeat.
#
# BASE=REV also builds smtplog at git revision REV and runs it in each run
# (as "base"), to compare before and after on the same machine load.
#
#   [RUNS=N] [BASE=REV] bench/capture.sh [MESSAGES] [SIZE]     defaults 10000 5120, RUNS=1
set -euo pipefail
MESSAGES=${1:-10000}
SIZE=${2:-5120}
RUNS=${RUNS:-1}
MAILPIT_VERSION=v1.33.1
cd "$(dirname "$0")/.."
command -v smtp-source >/dev/null || PATH=$PATH:/usr/sbin
command -v smtp-source >/dev/null || { echo "capture.sh: smtp-source not found (apt-get install postfix)" >&2; exit 1; }

work=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

echo "building smtplog and Mailpit $MAILPIT_VERSION ..." >&2
go build -o "$work/smtplog" ./cmd/smtplog
GOBIN="$work" GOFLAGS=-mod=mod go install "github.com/axllent/mailpit@$MAILPIT_VERSION" 2>&2
servers="mailpit smtplog"
if [ -n "${BASE:-}" ]; then
	git archive --format=tar --prefix=base/ "$BASE" | tar -xf - -C "$work"
	(cd "$work/base" && go build -o "$work/base-smtplog" ./cmd/smtplog)
	servers="mailpit base smtplog"
fi

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
waitport() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }
hwm() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }

# run NAME SESSIONS RUN: start the server on a fresh database, send, report.
run() {
	local name=$1 sessions=$2 r=$3 port http db
	port=$(freeport); http=$(freeport)
	db="$work/$name-$sessions-$r.db"
	case $name in
	smtplog | base) "$work/${name/#base/base-smtplog}" serve --smtp "127.0.0.1:$port" --http "127.0.0.1:$http" --db "$db" --log-level warn 2>"$work/$name.log" & ;;
	mailpit) "$work/mailpit" --smtp "127.0.0.1:$port" --listen "127.0.0.1:$http" --database "$db" \
		--smtp-auth-accept-any --smtp-auth-allow-insecure --quiet >"$work/$name.log" 2>&1 & ;;
	esac
	pid=$!
	waitport "$port" || { echo "$name did not start" >&2; cat "$work/$name.log" >&2; exit 1; }
	local t0 t1
	t0=$(date +%s.%N)
	smtp-source -c -l "$SIZE" -m "$MESSAGES" -s "$sessions" -f app@dev.example -t user@example.com "127.0.0.1:$port" >/dev/null
	t1=$(date +%s.%N)
	local mem
	mem=$(hwm "$pid")
	kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
	rm -f "$db" "$db-wal" "$db-shm"
	local rate
	rate=$(python3 -c "import sys; n,a,b=int(sys.argv[1]),float(sys.argv[2]),float(sys.argv[3]); print('%.0f' % (n/(b-a)))" "$MESSAGES" "$t0" "$t1")
	echo "$name $sessions $r $rate $mem" >>"$work/results"
	printf 'run %-2s %-8s sessions=%-3s %7s msg/s  peak RSS %6.1f MB\n' "$r" "$name" "$sessions" "$rate" "$(echo "$mem/1024" | bc -l)"
}

echo "$MESSAGES messages of $SIZE bytes; $(nproc) CPUs; $RUNS run(s)" >&2
for r in $(seq "$RUNS"); do
	for sessions in 1 20; do
		for name in $servers; do
			run "$name" "$sessions" "$r"
		done
	done
done
python3 - "$work/results" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
res = {}
for name, s, r, rate, mem in rows:
    res.setdefault((name, s), {})[r] = (float(rate), float(mem) / 1024)
def med(xs): return statistics.median(xs)
names = [n for n in ("mailpit", "base", "smtplog") if (n, "1") in res]
for s in ("1", "20"):
    for name in names:
        v = res[(name, s)].values()
        rates, mems = [x[0] for x in v], [x[1] for x in v]
        print(f"{name:8} sessions={s:3} median {med(rates):6.0f} msg/s ({min(rates):.0f}-{max(rates):.0f})"
              f"  peak RSS median {med(mems):5.1f} MB ({min(mems):.1f}-{max(mems):.1f})")
    for name in names[1:]:
        m, o = res[("mailpit", s)], res[(name, s)]
        rr = [o[r][0] / m[r][0] for r in m]
        mr = [o[r][1] / m[r][1] for r in m]
        print(f"sessions={s}: {name}/mailpit rate x{med(rr):.2f} ({min(rr):.2f}-{max(rr):.2f}),"
              f" peak RSS x{med(mr):.2f} ({min(mr):.2f}-{max(mr):.2f})  [medians of per-run ratios]")
PY
