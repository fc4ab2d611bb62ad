#!/usr/bin/env bash
# testdata/pcap/make.sh: record lo-smtp.pcap (and its pcapng copy) with a
# real kernel capture: tcpdump on the loopback interface while swaks sends
# to smtplog's capture server. Three sessions: a plain message, pipelined
# mail to two recipients, and a message after STARTTLS. Needs root,
# go, tcpdump, swaks (with libnet-ssleay-perl for --tls) and editcap
# (Debian package wireshark-common). The files are committed; tests only
# read them.
set -euo pipefail
cd "$(dirname "$0")"
out=$PWD
tmp=$(mktemp -d)
trap 'kill "${srv:-}" "${dump:-}" 2>/dev/null || true; rm -rf "$tmp"' EXIT
(cd ../.. && go build -o "$tmp/smtplog" ./cmd/smtplog)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$tmp/smtplog" serve --smtp "127.0.0.1:$port" --http off --db :memory: --hostname mx.test \
	--log-file - --log-level error >"$tmp/records.jsonl" 2>"$tmp/serve.log" &
srv=$!
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
tcpdump -i lo -U -s 0 -w "$tmp/lo.pcap" "tcp port $port" 2>"$tmp/tcpdump.log" &
dump=$!
sleep 1
common=(-s 127.0.0.1 -p "$port" --helo client.test -f sender@client.test)
swaks "${common[@]}" -t rcpt@dest.test --header 'Message-Id: <plain@client.test>' --header 'Subject: real capture' >/dev/null
swaks "${common[@]}" -t a@dest.test,b@dest.test --pipeline --header 'Message-Id: <pipelined@client.test>' >/dev/null
swaks "${common[@]}" -t rcpt@dest.test --tls --header 'Message-Id: <tls@client.test>' >/dev/null
sleep 1
kill -INT "$dump"
wait "$dump" || true
dump=
cp "$tmp/lo.pcap" "$out/lo-smtp.pcap"
editcap -F pcapng "$out/lo-smtp.pcap" "$out/lo-smtp.pcapng"
grep -o '"queue_id":"[^"]*"' "$tmp/records.jsonl" | sort -u >"$out/lo-smtp.queue-ids"
echo "wrote lo-smtp.pcap, lo-smtp.pcapng and the queue IDs the server gave: $(wc -l <"$out/lo-smtp.queue-ids")"
