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
	# Download and unpack in a directory of this run's own, then move it
	# into place in one step, so that concurrent runs never see half of it.
	tmp=$(mktemp -d "$dir/unpack.XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	(cd "$tmp" && apt-get download exim4-daemon-light exim4-base exim4-config >/dev/null 2>&1)
	for f in "$tmp"/exim4-*.deb; do dpkg -x "$f" "$tmp/root"; done
	mv -T "$tmp/root" "$dir/root" 2>/dev/null || [ -x "$dir/root/usr/sbin/exim4" ]
fi
if ldd "$dir/root/usr/sbin/exim4" | grep -q 'not found'; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y libidn12 >/dev/null
fi
echo "$dir/root/usr/sbin/exim4"
