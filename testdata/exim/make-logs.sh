#!/bin/bash
# make-logs.sh EXIM WORKDIR OUTDIR [default|all]
#
# Runs a private Exim daemon on free 127.0.0.1 ports with a minimal
# configuration (spool and logs under WORKDIR), routes mail to Postfix's
# smtp-sink instances that accept, defer (4xx) or bounce (5xx) every
# recipient, sends real traffic with swaks and raw sockets, and copies the
# resulting mainlog and rejectlog to OUTDIR. The second argument selects the
# log_selector: "default" (Exim's defaults plus connection lines and subjects)
# or "all" (+all: subsecond times, pids, QT=/DT=, ...).
#
# Needs root (Exim wants its Debian-exim user; the script provides one in a
# private mount namespace instead of adding it to the system), swaks,
# smtp-sink and openssl. EXIM is the exim4 binary that extract.sh prints.
set -euo pipefail

exim=${1:?usage: make-logs.sh EXIM WORKDIR OUTDIR [default|all]}
work=${2:?}
out=${3:?}
variant=${4:-default}

# swaks needs Net::SSLeay for STARTTLS.
if ! perl -MNet::SSLeay -e 1 2>/dev/null; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y libnet-ssleay-perl >/dev/null
fi

mkdir -p "$work" "$out"
work=$(cd "$work" && pwd)
out=$(cd "$out" && pwd)

# Exim looks its compiled-in user up by name: give it one in a private mount
# namespace so the system's user database is left alone.
if ! getent passwd Debian-exim >/dev/null; then
	if [ -z "${MAKE_LOGS_NS:-}" ]; then
		cp /etc/passwd "$work/passwd"
		cp /etc/group "$work/group"
		echo 'Debian-exim:x:64990:64990::/nonexistent:/usr/sbin/nologin' >>"$work/passwd"
		echo 'Debian-exim:x:64990:' >>"$work/group"
		exec unshare -m env MAKE_LOGS_NS=1 bash -c \
			'mount --bind "$1/passwd" /etc/passwd && mount --bind "$1/group" /etc/group && exec bash "$0" "$2" "$1" "$3" "$4"' \
			"$0" "$work" "$exim" "$out" "$variant"
	fi
	echo "no Debian-exim user" >&2
	exit 1
fi

chosen=" "
freeport() {
	local p
	while :; do
		# Below the kernel's ephemeral range (32768 and up by default), so
		# no outgoing connection of a concurrent test holds the port.
		p=$((15000 + RANDOM % 17000))
		if [ -z "$(ss -Hltn "sport = :$p")" ] && [[ $chosen != *" $p "* ]]; then
			echo "$p"
			return
		fi
	done
}

pids=()
cleanup() {
	if [ -f "$work/exim.pid" ]; then kill "$(cat "$work/exim.pid")" 2>/dev/null || true; fi
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

rm -rf "$work/spool" "$work/log" "$work/mail"
mkdir -p "$work/spool" "$work/log" "$work/mail"
chown -R Debian-exim:Debian-exim "$work/spool" "$work/log" "$work/mail"
chmod 755 "$work"

P_IN=$(freeport)   # Exim's SMTP port
chosen+="$P_IN "
P_TLS=$(freeport)  # Exim's second port: the far end of the tls.test hop
chosen+="$P_TLS "
P_OK=$(freeport)   # smtp-sink: accepts everything
chosen+="$P_OK "
P_TMP=$(freeport)  # smtp-sink: 4xx to RCPT
chosen+="$P_TMP "
P_PERM=$(freeport) # smtp-sink: 5xx to RCPT
chosen+="$P_PERM "
P_DATA=$(freeport) # smtp-sink: 5xx after DATA
chosen+="$P_DATA "

if [ ! -f "$work/cert.pem" ]; then
	openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj '/CN=mx.example.test' \
		-keyout "$work/key.pem" -out "$work/cert.pem" >/dev/null 2>&1
fi
chown Debian-exim "$work/key.pem" "$work/cert.pem"

selector='+smtp_connection +smtp_no_mail +subject +tls_peerdn +tls_certificate_verified'
lookup=''
if [ "$variant" = all ]; then
	selector='+all'
	lookup='host_lookup = *'
fi

cat >"$work/exim.conf" <<CONF
exim_path = $exim
primary_hostname = mx.example.test
qualify_domain = example.test
local_interfaces = 127.0.0.1
daemon_smtp_ports = $P_IN : $P_TLS
spool_directory = $work/spool
log_file_path = $work/log/%slog
pid_file_path = $work/exim.pid
log_selector = $selector
$lookup
rfc1413_query_timeout = 0s
never_users =
trusted_users = root
tls_advertise_hosts = *
tls_certificate = $work/cert.pem
tls_privatekey = $work/key.pem
auth_advertise_hosts = *
acl_smtp_mail = acl_mail
acl_smtp_rcpt = acl_rcpt
acl_smtp_data = acl_data

begin acl

acl_mail:
  deny    senders = *@bad.test
          message = Sender blocked by policy
  accept

acl_rcpt:
  deny    domains = reject.test
          message = relay not permitted
  accept  domains = cut.test
          control = cutthrough_delivery
  accept  domains = ok.test : defer.test : bounce.test : dropdata.test : tls.test : expire.test : local.test : example.test
  deny    message = relay not permitted

acl_data:
  deny    condition = \${if match{\$h_subject:}{REJECTME}}
          message = Content rejected by policy
  accept

begin routers

tls_hop:
  driver = manualroute
  domains = tls.test
  condition = \${if !={\$received_port}{$P_TLS}}
  route_list = * 127.0.0.1
  address_data = $P_TLS
  transport = remote_tls
  self = send

local:
  driver = accept
  domains = local.test
  transport = local_file

sink_ok:
  driver = manualroute
  domains = ok.test : tls.test : cut.test : example.test
  route_list = * 127.0.0.1
  transport = remote_ok
  self = send

sink_defer:
  driver = manualroute
  domains = defer.test : expire.test
  route_list = * 127.0.0.1
  transport = remote_defer
  self = send

sink_bounce:
  driver = manualroute
  domains = bounce.test
  route_list = * 127.0.0.1
  transport = remote_bounce
  self = send

sink_data:
  driver = manualroute
  domains = dropdata.test
  route_list = * 127.0.0.1
  transport = remote_data
  self = send

begin transports

remote_ok:
  driver = smtp
  port = $P_OK
  allow_localhost
  hosts_avoid_tls = *

remote_defer:
  driver = smtp
  port = $P_TMP
  allow_localhost
  hosts_avoid_tls = *

remote_bounce:
  driver = smtp
  port = $P_PERM
  allow_localhost
  hosts_avoid_tls = *

remote_data:
  driver = smtp
  port = $P_DATA
  allow_localhost
  hosts_avoid_tls = *

remote_tls:
  driver = smtp
  port = \$address_data
  allow_localhost
  hosts_require_tls = *
  tls_verify_certificates = $work/cert.pem
  tls_verify_cert_hostnames =
  tls_verify_hosts = *

local_file:
  driver = appendfile
  file = $work/mail/inbox
  user = Debian-exim
  group = Debian-exim
  mode = 0600

begin retry

expire.test  *  F,2s,1s
*            *  F,1h,15m

begin authenticators

plain:
  driver = plaintext
  public_name = PLAIN
  server_prompts = :
  server_condition = \${if and{{eq{\$auth2}{alice}}{eq{\$auth3}{secret}}}}
  server_set_id = \$auth2

login:
  driver = plaintext
  public_name = LOGIN
  server_prompts = Username:: : Password::
  server_condition = \${if and{{eq{\$auth1}{alice}}{eq{\$auth2}{secret}}}}
  server_set_id = \$auth1
CONF
chmod 644 "$work/exim.conf"

E() { "$exim" -C "$work/exim.conf" "$@"; }

smtp-sink -u nobody 127.0.0.1:$P_OK 64 & pids+=($!)
smtp-sink -u nobody -r RCPT 127.0.0.1:$P_TMP 64 & pids+=($!)
smtp-sink -u nobody -f RCPT 127.0.0.1:$P_PERM 64 & pids+=($!)
smtp-sink -u nobody -f . 127.0.0.1:$P_DATA 64 & pids+=($!)
E -bd
listening() {
	local p
	for p in "$@"; do [ -n "$(ss -Hltn "sport = :$p")" ] || return 1; done
}
for _ in $(seq 100); do
	listening "$P_IN" "$P_TLS" "$P_OK" "$P_TMP" "$P_PERM" "$P_DATA" && break
	sleep 0.1
done
if ! listening "$P_IN" "$P_TLS" "$P_OK" "$P_TMP" "$P_PERM" "$P_DATA"; then
	# A port was taken between the choice and the bind: say so with an
	# exit status of its own, so the caller can run again on new ports.
	echo "make-logs.sh: a daemon did not start listening (port taken?)" >&2
	exit 75
fi

sw() { swaks --server 127.0.0.1:$P_IN --silent 2 "$@" >>"$work/swaks.out" 2>&1 || true; }

# 1. plain delivery with a subject and a Message-ID
sw --ehlo client.example.test --from alice@ok.test --to bob@ok.test \
	--header 'Subject: hello one' --header 'Message-Id: <one@client.example.test>'
# 2. several recipients with every outcome: => -> == ** and a bounce message
sw --ehlo client.example.test --from alice@ok.test \
	--to bob@ok.test,carol@ok.test,dave@defer.test,erin@bounce.test \
	--header 'Subject: mixed' --header 'Message-Id: <mixed@client.example.test>'
# 3. STARTTLS and AUTH PLAIN
sw --ehlo tls-client.example.test --tls --auth PLAIN --auth-user alice --auth-password secret \
	--from alice@ok.test --to frank@ok.test --header 'Subject: authenticated'
# 4. AUTH LOGIN without TLS
sw --ehlo client.example.test --auth LOGIN --auth-user alice --auth-password secret \
	--from alice@ok.test --to grace@ok.test
# 5. authentication failure
sw --ehlo badauth.example.test --auth PLAIN --auth-user alice --auth-password wrong \
	--from alice@ok.test --to bob@ok.test
# 6. rejected RCPT (one refused, one accepted in the same transaction)
sw --ehlo client.example.test --from alice@ok.test --to mallory@reject.test
sw --ehlo client.example.test --from alice@ok.test --to heidi@ok.test,ivan@nowhere.test
# 7. rejected MAIL
sw --ehlo spam.example.test --from spammer@bad.test --to bob@ok.test
# 8. rejected after DATA
sw --ehlo client.example.test --from alice@ok.test --to bob@ok.test --header 'Subject: REJECTME now'
# 9. TLS to the next hop (Exim to its own second port), verified certificate
sw --ehlo client.example.test --from alice@ok.test --to judy@tls.test --header 'Subject: tls hop'
# 10. cutthrough delivery
sw --ehlo client.example.test --from alice@ok.test --to ken@cut.test --header 'Subject: cutthrough'
# 11. local delivery to a file
sw --ehlo client.example.test --from alice@ok.test --to leo@local.test
# 12. remote 5xx after DATA
sw --ehlo client.example.test --from alice@ok.test --to mike@dropdata.test
# 13. deferred, expires later
sw --ehlo client.example.test --from alice@ok.test --to nina@expire.test --header 'Subject: will expire'
# 14. null sender
sw --ehlo client.example.test --from '<>' --to olivia@ok.test --header 'Subject: null sender'
# 15. a bounce whose own bounce fails: frozen
sw --ehlo client.example.test --from peggy@bounce.test --to quinn@bounce.test
# 16. no MAIL command
sw --ehlo nomail.example.test --quit-after EHLO
# 17. local submission and a -N (delivery suppressed) submission
printf 'Subject: local\nMessage-Id: <local@mx.example.test>\n\nbody\n' |
	E -odi -f root@example.test rupert@ok.test
printf 'Subject: fake\n\nbody\n' | E -odi -N -f root@example.test sybil@ok.test
# 18. commands pipelined after HELO, then the client drops the connection
(
	exec 3<>/dev/tcp/127.0.0.1/$P_IN
	read -r -t 3 _ <&3
	printf 'HELO early.example.test\r\n' >&3
	sleep 0.3
	printf 'MAIL FROM:<alice@ok.test>\r\nRCPT TO:<bob@ok.test>\r\n' >&3
	timeout 2 cat <&3 >/dev/null || true
) || true
# 19. a TLS handshake that fails
(
	exec 3<>/dev/tcp/127.0.0.1/$P_IN
	read -r -t 3 _ <&3
	printf 'EHLO broken-tls.example.test\r\n' >&3
	sleep 0.3
	printf 'STARTTLS\r\n' >&3
	sleep 0.3
	printf 'this is not a TLS client hello\r\n\r\n' >&3
	timeout 3 cat <&3 >/dev/null || true
) || true
# 20. connection lost during DATA
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

# Let deliveries finish, then run the queue after expire.test's retry limit.
sleep 3
E -qff
sleep 2
E -qff
sleep 1

# The logs name the binary and the work directory (+arguments): replace them
# with neutral paths so the committed logs do not depend on where they ran.
for f in mainlog rejectlog paniclog; do
	[ -f "$work/log/$f" ] || continue
	sed -e "s#$exim#/usr/sbin/exim4#g" -e "s#$work#/var/spool/exim-test#g" -e "s#cwd=[^ ]*#cwd=/srv/smtplog/testdata/exim#g" "$work/log/$f" >"$out/$f"
done
exit 0
