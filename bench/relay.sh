#!/usr/bin/env bash
# Relay throughput: Postfix's smtp-source into smtp-sink three ways in one
# run: directly, through a relay that only io.Copies bytes (bench/copyrelay),
# and through `smtplog proxy` writing every record to a file. Each way runs
# with a new connection per message and again with connections reused (-d).
#
#   bench/relay.sh [MESSAGES] [SESSIONS] [SIZE]      (defaults 20000 20 5120)
#
# Prints messages per second, the ratios, and smtplog's peak memory and CPU
# seconds per message. Needs: postfix (smtp-source, smtp-sink), go.
set -euo pipefail
cd "$(dirname "$0")/.."

msgs=${1:-20000}
sess=${2:-20}
size=${3:-5120}
out=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$out"' EXIT

go build -o "$out/smtplog" ./cmd/smtplog
go build -o "$out/copyrelay" ./bench/copyrelay

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }

sink_port=$(free_port)
smtp-sink -u nobody 127.0.0.1:"$sink_port" 1024 &
wait_port "$sink_port"

copy_port=$(free_port)
"$out/copyrelay" -listen 127.0.0.1:"$copy_port" -upstream 127.0.0.1:"$sink_port" &
copy_pid=$!
wait_port "$copy_port"

proxy_port=$(free_port)
"$out/smtplog" proxy --listen 127.0.0.1:"$proxy_port" --upstream 127.0.0.1:"$sink_port" \
	--upstream-tls none --log-file "$out/records.jsonl" --max-connections 1000 --max-connections-per-ip 1000 \
	--log-level warn &
proxy_pid=$!
wait_port "$proxy_port"

cpu_seconds() { awk '{printf "%.2f", ($14+$15)/100}' "/proc/$1/stat"; }

# run PORT FLAGS -> messages per second
run() {
	local port=$1 flags=$2 start end
	start=$(date +%s.%N)
	smtp-source $flags -s "$sess" -m "$msgs" -l "$size" -f bench@smtplog.test -t sink@smtplog.test 127.0.0.1:"$port"
	end=$(date +%s.%N)
	python3 -c "print(round($msgs/($end-$start)))"
}

printf '%-28s %10s %10s %10s   %s\n' mode direct copyrelay smtplog "smtplog/copyrelay"
for flags in "" "-d"; do
	label="new connection per message"
	[[ $flags == -d ]] && label="connections reused (-d)"
	d=$(run "$sink_port" "$flags")
	ccpu0=$(cpu_seconds "$copy_pid")
	c=$(run "$copy_port" "$flags")
	ccpu1=$(cpu_seconds "$copy_pid")
	cpu0=$(cpu_seconds "$proxy_pid")
	s=$(run "$proxy_port" "$flags")
	cpu1=$(cpu_seconds "$proxy_pid")
	ratio=$(python3 -c "print(f'{$s/$c:.2f}')")
	printf '%-28s %10s %10s %10s   %s\n' "$label" "$d" "$c" "$s" "$ratio"
	python3 -c "print(f'  CPU per message: copyrelay {($ccpu1-$ccpu0)*1e6/$msgs:.0f} µs, smtplog {($cpu1-$cpu0)*1e6/$msgs:.0f} µs')"
done
echo "smtplog peak RSS: $(awk '/VmHWM/ {print $2, $3}' /proc/$proxy_pid/status)"
echo "records written: $(wc -l <"$out/records.jsonl")"
