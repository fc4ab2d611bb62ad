#!/bin/bash
# extract.sh DIR: download Debian's Exim packages and unpack them into DIR
# without installing them (Exim would replace the installed MTA). Prints the
# path of the exim4 binary. The shared libraries it needs are ordinary Debian
# libraries and are installed with apt-get when missing.
set -euo pipefail
dir=${1:?usage: extract.sh DIR}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
if [ ! -x "$dir/root/usr/sbin/exim4" ]; then
	(cd "$dir" && apt-get download exim4-daemon-light exim4-base exim4-config >/dev/null 2>&1)
	for f in "$dir"/exim4-*.deb; do dpkg -x "$f" "$dir/root"; done
fi
if ldd "$dir/root/usr/sbin/exim4" | grep -q 'not found'; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y libidn12 >/dev/null
fi
echo "$dir/root/usr/sbin/exim4"
