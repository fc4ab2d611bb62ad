#!/usr/bin/env bash
# Log throughput: a Postfix log of LINES lines replayed from real Postfix
# output (bench/postfixlog: the copies follow one another in time like a
# continuous log, so idle flushes and link windows run as on a real one),
# then in one run
#   - `smtplog report` against pflogsumm (Debian's) on it, and
#   - `smtplog ingest --out /dev/null` against `wc -l` (the I/O floor).
#
#   bench/ingest.sh [LINES]        (default 1000000)
#
# Prints seconds, lines/s, MB/s, the ratios and each program's peak memory
# (maximum resident set size from /usr/bin/time -v), and its CPU seconds
# (user + system), which a busy shared machine disturbs less than the wall
# clock. Each program runs once after a warm-up read of the file, so all
# read it from the page cache.
# Needs: go, pflogsumm, GNU time.
set -euo pipefail
cd "$(dirname "$0")/.."

lines=${1:-1000000}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

go build -o "$out/smtplog" ./cmd/smtplog
go run ./bench/postfixlog -lines "$lines" > "$out/mail.log"
n=$(wc -l < "$out/mail.log")
bytes=$(stat -c %s "$out/mail.log")
cat "$out/mail.log" > /dev/null

# measure NAME CMD...: runs CMD under /usr/bin/time -v, output discarded,
# and records its wall seconds and peak RSS in KiB.
declare -A secs rss cpu
measure() {
	local name=$1
	shift
	/usr/bin/time -v -o "$out/$name.time" "$@" > /dev/null 2> "$out/$name.err" || {
		cat "$out/$name.err" >&2
		return 1
	}
	secs[$name]=$(awk -F': ' '/Elapsed \(wall clock\)/ {n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s}' "$out/$name.time")
	rss[$name]=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$out/$name.time")
	cpu[$name]=$(awk -F': ' '/(User|System) time \(seconds\)/ {s += $2} END {print s}' "$out/$name.time")
}

measure wc wc -l "$out/mail.log"
measure ingest "$out/smtplog" ingest --progress never --out /dev/null "$out/mail.log"
measure report "$out/smtplog" report --progress never --format json "$out/mail.log"
measure pflogsumm pflogsumm "$out/mail.log"

printf 'input: %d lines, %.1f MB of Postfix 3.7 output replayed\n\n' "$n" "$(echo "$bytes / 1000000" | bc -l)"
printf '%-12s %9s %13s %9s %10s %9s\n' program seconds lines/s MB/s "peak MiB" "cpu s"
for p in wc ingest report pflogsumm; do
	s=${secs[$p]}
	awk -v p="$p" -v s="$s" -v n="$n" -v b="$bytes" -v r="${rss[$p]}" -v c="${cpu[$p]}" 'BEGIN {
		if (s < 0.005) s = 0.005
		printf "%-12s %9.2f %13.0f %9.1f %10.1f %9.2f\n", p, s, n / s, b / s / 1e6, r / 1024, c }'
done
awk -v r="${secs[report]}" -v p="${secs[pflogsumm]}" -v i="${secs[ingest]}" -v w="${secs[wc]}" \
	-v rc="${cpu[report]}" -v pc="${cpu[pflogsumm]}" 'BEGIN {
	if (r < 0.005) r = 0.005
	if (w < 0.005) w = 0.005
	if (rc < 0.005) rc = 0.005
	printf "\nsmtplog report is %.1fx faster than pflogsumm (target 20x; %.1fx in CPU seconds)\n", p / r, pc / rc
	printf "smtplog ingest takes %.0fx the time of wc -l\n", i / w }'
echo
echo "smtplog ingest's own summary:"
cat "$out/ingest.err"
