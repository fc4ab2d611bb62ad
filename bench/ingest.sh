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
# clock. The programs run in turn RUNS times (default 3) after a warm-up
# read of the file, so all read it from the page cache; the figures are
# each program's medians (peak memory: the largest).
#
# BASE=REV also builds smtplog at git revision REV (a commit, tag or
# branch) and measures it in the same run, as "report@base" and
# "ingest@base": before and after on equal terms.
# Needs: go, git (for BASE), pflogsumm, GNU time.
set -euo pipefail
cd "$(dirname "$0")/.."

lines=${1:-1000000}
runs=${RUNS:-3}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

go build -o "$out/smtplog" ./cmd/smtplog
programs=(wc ingest report pflogsumm)
if [ -n "${BASE:-}" ]; then
	git archive --format=tar --prefix=base/ "$BASE" | tar -xf - -C "$out"
	(cd "$out/base" && go build -o "$out/smtplog.base" ./cmd/smtplog)
	rm -rf "$out/base"
	programs=(wc ingest@base ingest report@base report pflogsumm)
fi
go run ./bench/postfixlog -lines "$lines" > "$out/mail.log"
n=$(wc -l < "$out/mail.log")
bytes=$(stat -c %s "$out/mail.log")
cat "$out/mail.log" > /dev/null

# measure NAME CMD...: runs CMD under /usr/bin/time -v, output discarded,
# and appends its wall seconds, CPU seconds and peak RSS in KiB to NAME's.
declare -A secs rss cpu
measure() {
	local name=$1
	shift
	/usr/bin/time -v -o "$out/$name.time" "$@" > /dev/null 2> "$out/$name.err" || {
		cat "$out/$name.err" >&2
		return 1
	}
	secs[$name]+=" $(awk -F': ' '/Elapsed \(wall clock\)/ {n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s}' "$out/$name.time")"
	rss[$name]+=" $(awk -F': ' '/Maximum resident set size/ {print $2}' "$out/$name.time")"
	cpu[$name]+=" $(awk -F': ' '/(User|System) time \(seconds\)/ {s += $2} END {print s}' "$out/$name.time")"
}

run() {
	case $1 in
	wc) measure wc wc -l "$out/mail.log" ;;
	ingest) measure ingest "$out/smtplog" ingest --progress never --out /dev/null "$out/mail.log" ;;
	ingest@base) measure ingest@base "$out/smtplog.base" ingest --progress never --out /dev/null "$out/mail.log" ;;
	report) measure report "$out/smtplog" report --progress never --format json "$out/mail.log" ;;
	report@base) measure report@base "$out/smtplog.base" report --progress never --format json "$out/mail.log" ;;
	pflogsumm) measure pflogsumm pflogsumm "$out/mail.log" ;;
	esac
}

for ((i = 0; i < runs; i++)); do
	for p in "${programs[@]}"; do
		run "$p"
	done
done

# median of the numbers in $1; largest with "max".
median() { echo "$1" | tr ' ' '\n' | grep . | sort -g | awk -v m="${2:-}" '{v[NR] = $1} END {print (m == "max") ? v[NR] : v[int((NR + 1) / 2)]}'; }
declare -A S C R
for p in "${programs[@]}"; do
	S[$p]=$(median "${secs[$p]}")
	C[$p]=$(median "${cpu[$p]}")
	R[$p]=$(median "${rss[$p]}" max)
done

printf 'input: %d lines, %.1f MB of Postfix 3.7 output replayed; medians of %d runs\n\n' "$n" "$(echo "$bytes / 1000000" | bc -l)" "$runs"
printf '%-12s %9s %13s %9s %10s %9s %11s\n' program seconds lines/s MB/s "peak MiB" "cpu s" "MB/cpu-s"
for p in "${programs[@]}"; do
	awk -v p="$p" -v s="${S[$p]}" -v n="$n" -v b="$bytes" -v r="${R[$p]}" -v c="${C[$p]}" 'BEGIN {
		if (s < 0.005) s = 0.005
		if (c < 0.005) c = 0.005
		printf "%-12s %9.2f %13.0f %9.1f %10.1f %9.2f %11.1f\n", p, s, n / s, b / s / 1e6, r / 1024, c, b / c / 1e6 }'
done
ratios() { # NAME-OF-SMTPLOG-REPORT NAME-OF-SMTPLOG-INGEST LABEL
	awk -v r="${S[$1]}" -v p="${S[pflogsumm]}" -v i="${S[$2]}" -v w="${S[wc]}" -v b="$bytes" \
		-v rc="${C[$1]}" -v pc="${C[pflogsumm]}" -v ic="${C[$2]}" -v l="$3" 'BEGIN {
		if (r < 0.005) r = 0.005
		if (w < 0.005) w = 0.005
		if (rc < 0.005) rc = 0.005
		if (i < 0.005) i = 0.005
		if (ic < 0.005) ic = 0.005
		printf "\n%s\n", l
		printf "  smtplog report is %.1fx faster than pflogsumm (target 20x; %.1fx in CPU seconds)\n", p / r, pc / rc
		printf "  smtplog ingest: %.0f MB/s (%.0f MB per CPU second; target 100 MB/s), %.0fx the time of wc -l\n", b / i / 1e6, b / ic / 1e6, i / w }'
}
if [ -n "${BASE:-}" ]; then
	ratios report@base ingest@base "base ($BASE):"
	ratios report ingest "this tree:"
else
	ratios report ingest "this tree:"
fi
echo
echo "smtplog ingest's own summary (last run):"
cat "$out/ingest.err"
