#!/usr/bin/env bash
# Capture throughput: `smtplog pcap` against tshark's SMTP dissector and
# tcpdump's ASCII dump, in the same run, over a generated capture of
# 10,000 messages in 2,000 pipelined SMTP sessions, 50 connections
# interleaved (about 43 MB of synthetic Ethernet/IPv4/TCP packets, written
# by internal/pcapsmtp's TestBenchCapture).
#
#   bench/pcap.sh                  RUNS=N (default 3) runs of each, medians
#
#   smtplog pcap FILE --out /dev/null                          every record
#   tshark -r FILE -Y smtp -T fields -e smtp.req.command       SMTP commands only
#   tcpdump -r FILE -A                                         payload as text, no reassembly
#
# Prints seconds, MB/s and messages/s (each program's median), peak memory
# (maximum resident set size) and CPU seconds. Needs: go, GNU time, tshark
# and tcpdump (Debian packages; for this benchmark only).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-3}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for p in tshark tcpdump /usr/bin/time; do
	command -v "$p" >/dev/null || { echo "bench/pcap.sh: $p missing (apt-get install tshark tcpdump time)" >&2; exit 1; }
done
go build -o "$out/smtplog" ./cmd/smtplog
PCAP_BENCH_OUT="$out/bench.pcap" go test -count=1 -run '^TestBenchCapture$' ./internal/pcapsmtp >/dev/null
file="$out/bench.pcap"
bytes=$(stat -c %s "$file")
messages=10000
cat "$file" >/dev/null # into the page cache

measure() { # name command...: one run; prints "seconds maxrss_kb cpu_seconds"
	local name=$1
	shift
	/usr/bin/time -f '%e %M %U %S' -o "$out/$name.time" "$@" >/dev/null 2>"$out/$name.err" || {
		echo "$name failed:" >&2
		cat "$out/$name.err" >&2
		exit 1
	}
	awk '{printf "%s %s %.2f\n", $1, $2, $3 + $4}' "$out/$name.time"
}

declare -A secs rss cpu
names=(smtplog tshark tcpdump)
for ((r = 0; r < runs; r++)); do
	for n in "${names[@]}"; do
		case $n in
		smtplog) res=$(measure $n "$out/smtplog" pcap --progress never --out /dev/null "$file") ;;
		tshark) res=$(measure $n tshark -r "$file" -Y smtp -T fields -e smtp.req.command) ;;
		tcpdump) res=$(measure $n tcpdump -r "$file" -A) ;;
		esac
		read -r s m c <<<"$res"
		secs[$n]+="$s "
		cpu[$n]+="$c "
		((m > ${rss[$n]:-0})) && rss[$n]=$m
	done
done
median() { tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
grep -o '[0-9]* SMTP sessions.*messages' "$out/smtplog.err" || true
printf '%-8s %8s %9s %12s %10s %8s\n' program seconds MB/s messages/s peak_MB cpu_s
for n in "${names[@]}"; do
	s=$(echo "${secs[$n]}" | median)
	c=$(echo "${cpu[$n]}" | median)
	awk -v n="$n" -v s="$s" -v c="$c" -v b="$bytes" -v m="$messages" -v r="${rss[$n]}" \
		'BEGIN {printf "%-8s %8.2f %9.1f %12.0f %10.1f %8.2f\n", n, s, b/1e6/s, m/s, r/1024, c}'
done
