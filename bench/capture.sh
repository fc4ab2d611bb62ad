#!/usr/bin/env bash
# bench/capture.sh: capture-mode throughput and peak memory, smtplog against
# Mailpit, in the same run on the same disk.
#
# smtp-source sends MESSAGES messages of SIZE bytes with 1 and with 20
# sessions to each server; each server stores to its own fresh SQLite file
# with its default retention (500 messages). Reported: messages per second,
# peak RSS (VmHWM) of the server process, and smtplog/Mailpit ratios.
#
# Needs: go, smtp-source (Debian package postfix). Mailpit is built from
# the Go module proxy into a temporary directory and never kept.
#
#   bench/capture.sh [MESSAGES] [SIZE]     defaults 10000 5120
set -euo pipefail
MESSAGES=${1:-10000}
SIZE=${2:-5120}
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

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
waitport() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }
hwm() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }

# run NAME SESSIONS: start the server on a fresh database, send, report.
run() {
	local name=$1 sessions=$2 port http db
	port=$(freeport); http=$(freeport)
	db="$work/$name-$sessions.db"
	case $name in
	smtplog) "$work/smtplog" serve --smtp "127.0.0.1:$port" --http "127.0.0.1:$http" --db "$db" --log-level warn 2>"$work/$name.log" & ;;
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
	python3 -c "import sys; n,a,b=int(sys.argv[1]),float(sys.argv[2]),float(sys.argv[3]); print('%.0f' % (n/(b-a)))" "$MESSAGES" "$t0" "$t1" >"$work/$name-$sessions.rate"
	echo "$mem" >"$work/$name-$sessions.mem"
	printf '%-8s sessions=%-3s %7s msg/s  peak RSS %6.1f MB\n' "$name" "$sessions" "$(cat "$work/$name-$sessions.rate")" "$(echo "$mem/1024" | bc -l)"
}

echo "$MESSAGES messages of $SIZE bytes; $(nproc) CPUs" >&2
for sessions in 1 20; do
	run mailpit "$sessions"
	run smtplog "$sessions"
done
for sessions in 1 20; do
	python3 - "$work" "$sessions" <<'PY'
import sys
w, s = sys.argv[1], sys.argv[2]
r = lambda n, k: float(open(f"{w}/{n}-{s}.{k}").read())
print(f"sessions={s}: smtplog/mailpit rate x{r('smtplog','rate')/r('mailpit','rate'):.2f}, peak RSS x{r('smtplog','mem')/r('mailpit','mem'):.2f}")
PY
done
