#!/bin/bash
# make-logs.sh WORKDIR OUT
#
# Downloads Debian's opensmtpd package (without installing it), runs its
# smtpd in the foreground (-d) on a free 127.0.0.1 port with a private
# configuration, relays to Postfix's smtp-sink instances that accept, defer
# (4xx) or bounce (5xx) every recipient, sends real traffic with swaks and
# raw sockets, and writes smtpd's log to OUT.
#
# smtpd -d writes its log messages to stderr without a syslog prefix; the
# script adds a traditional one ("Nov 30 01:47:00 mx smtpd[PID]: ") with the
# time each line was read, which is what syslog would have written.
#
# Needs root: smtpd wants its users (opensmtpd, opensmtpq) and its spool
# (/var/spool/smtpd); the script provides them in a private mount namespace
# instead of changing the system.
set -euo pipefail

work=${1:?usage: make-logs.sh WORKDIR OUT}
out=${2:?}
mkdir -p "$work"
work=$(cd "$work" && pwd)

smtpd=$work/root/usr/sbin/smtpd
if [ ! -x "$smtpd" ]; then
	(cd "$work" && apt-get download opensmtpd >/dev/null 2>&1)
	dpkg -x "$work"/opensmtpd_*.deb "$work/root"
fi
if ! perl -MNet::SSLeay -e 1 2>/dev/null; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y libnet-ssleay-perl >/dev/null
fi

freeport() {
	local p
	while :; do
		p=$((20000 + RANDOM % 30000))
		if [ -z "$(ss -Hltn "sport = :$p")" ]; then
			echo "$p"
			return
		fi
	done
}

pids=()
cleanup() {
	if [ -s "$work/smtpd.pid" ]; then kill "$(cat "$work/smtpd.pid")" 2>/dev/null || true; fi
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT

P_IN=$(freeport)
P_OK=$(freeport)
P_TMP=$(freeport)
P_PERM=$(freeport)

cp /etc/passwd "$work/passwd"
cp /etc/group "$work/group"
echo 'opensmtpd:x:64991:64991::/nonexistent:/usr/sbin/nologin' >>"$work/passwd"
echo 'opensmtpq:x:64992:64992::/nonexistent:/usr/sbin/nologin' >>"$work/passwd"
printf 'opensmtpd:x:64991:\nopensmtpq:x:64992:\n' >>"$work/group"

if [ ! -f "$work/cert.pem" ]; then
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 -subj '/CN=mx.example.test' \
		-keyout "$work/key.pem" -out "$work/cert.pem" >/dev/null 2>&1
fi
chmod 600 "$work/key.pem"
echo "alice $(openssl passwd -6 secret)" >"$work/secrets"
chmod 640 "$work/secrets"

cat >"$work/smtpd.conf" <<CONF
pki mx.example.test cert "$work/cert.pem"
pki mx.example.test key "$work/key.pem"
table secrets file:$work/secrets
listen on 127.0.0.1 port $P_IN tls pki mx.example.test auth-optional <secrets> hostname mx.example.test
action "ok" relay host smtp://127.0.0.1:$P_OK
action "defer" relay host smtp://127.0.0.1:$P_TMP
action "bounce" relay host smtp://127.0.0.1:$P_PERM
match from any for domain "ok.test" action "ok"
match from any for domain "defer.test" action "defer"
match from any for domain "bounce.test" action "bounce"
match auth from any for domain "auth.test" action "ok"
CONF
chmod 644 "$work/smtpd.conf"

smtp-sink -u nobody 127.0.0.1:$P_OK 64 & pids+=($!)
smtp-sink -u nobody -r RCPT 127.0.0.1:$P_TMP 64 & pids+=($!)
smtp-sink -u nobody -f RCPT 127.0.0.1:$P_PERM 64 & pids+=($!)

: >"$work/smtpd.log"
rm -f "$work/smtpd.pid"
(
	unshare -m bash -c '
		mount --bind "$1/passwd" /etc/passwd
		mount --bind "$1/group" /etc/group
		mount -t tmpfs tmpfs /var/spool
		if [ ! -d /var/lib/opensmtpd ]; then mount -t tmpfs tmpfs /var/lib; fi
		mkdir -p /var/lib/opensmtpd/empty
		echo $$ >"$1/smtpd.pid"
		exec "$2" -d -f "$1/smtpd.conf"' _ "$work" "$smtpd" 2>&1 |
		while IFS= read -r line; do
			printf '%s mx smtpd[4242]: %s\n' "$(date '+%b %e %H:%M:%S')" "$line"
		done >>"$work/smtpd.log"
) &
pids+=($!)
for _ in $(seq 50); do
	[ -n "$(ss -Hltn "sport = :$P_IN")" ] && break
	sleep 0.1
done

sw() { swaks --server 127.0.0.1:$P_IN --silent 2 "$@" >>"$work/swaks.out" 2>&1 || true; }

# 1. plain delivery
sw --ehlo client.example.test --from alice@ok.test --to bob@ok.test \
	--header 'Subject: hello one' --header 'Message-Id: <one@client.example.test>'
# 2. several recipients: sent, deferred, bounced (and the bounce report)
sw --ehlo client.example.test --from alice@ok.test --to bob@ok.test,carol@ok.test,dave@defer.test,erin@bounce.test
# 3. STARTTLS and AUTH PLAIN
sw --ehlo tls-client.example.test --tls --auth PLAIN --auth-user alice --auth-password secret \
	--from alice@ok.test --to frank@auth.test
# 4. authentication failure (over TLS: smtpd offers AUTH only there)
sw --ehlo badauth.example.test --tls --auth PLAIN --auth-user alice --auth-password wrong \
	--from alice@ok.test --to bob@ok.test
# 5. rejected RCPT: unknown domain, and one that needs AUTH
sw --ehlo client.example.test --from alice@ok.test --to mallory@reject.test
sw --ehlo client.example.test --from alice@ok.test --to heidi@ok.test,ivan@auth.test
# 6. null sender
sw --ehlo client.example.test --from '<>' --to olivia@ok.test
# 7. a TLS handshake that fails
(
	exec 3<>/dev/tcp/127.0.0.1/$P_IN
	read -r -t 3 _ <&3
	printf 'EHLO broken-tls.example.test\r\n' >&3
	sleep 0.3
	printf 'STARTTLS\r\n' >&3
	sleep 0.3
	printf 'this is not a TLS client hello\r\n\r\n' >&3
	timeout 2 cat <&3 >/dev/null || true
) || true
# 8. connection lost during DATA
(
	exec 3<>/dev/tcp/127.0.0.1/$P_IN
	read -r -t 3 _ <&3
	for c in 'HELO lost.example.test' 'MAIL FROM:<alice@ok.test>' 'RCPT TO:<bob@ok.test>' 'DATA'; do
		printf '%s\r\n' "$c" >&3
		sleep 0.2
	done
	printf 'Subject: cut short\r\n\r\npartial' >&3
	sleep 0.2
) || true

# Wait for the deferred and the bounced recipients' attempts.
for _ in $(seq 100); do
	grep -q 'result="PermFail"' "$work/smtpd.log" && grep -q 'result="TempFail"' "$work/smtpd.log" && break
	sleep 0.2
done
sleep 1
cleanup
trap - EXIT
sed -e "s#$work#/var/lib/smtpd-test#g" "$work/smtpd.log" >"$out"
