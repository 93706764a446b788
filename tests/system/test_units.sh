#!/bin/sh
# SPDX-License-Identifier: MIT
# The systemd units: `systemd-analyze verify --man=no` prints nothing (it
# exits 0 even on unknown keys, so its output is checked), each service's
# exposure is at most 1.5 with `systemd-analyze security --offline=true`,
# and the example configs parse with -n. TAP.
set -u
b=$P2P_BUILDDIR
s=$P2P_SRCDIR
echo "1..6"
if ! command -v systemd-analyze >/dev/null; then
	for i in 1 2 3 4 5 6; do echo "ok $i # SKIP systemd-analyze is not installed"; done
	exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/bin" "$tmp/units"
ln -s "$b/src/dird/p2p-dird" "$tmp/bin/p2p-dird"
ln -s "$b/src/peerd/p2p-peerd" "$tmp/bin/p2p-peerd"
for f in "$s"/systemd/*.service.in; do
	sed "s|@sbindir@|$tmp/bin|g" "$f" > "$tmp/units/$(basename "$f" .in)"
done
cp "$s"/systemd/*.socket "$tmp/units/"
cd "$tmp/units"
ln -s p2p-peerd@.service p2p-peerd@t1.service
ln -s p2p-peerd@.socket p2p-peerd@t1.socket
ln -s p2p-peerd-control@.socket p2p-peerd-control@t1.socket

out=$(systemd-analyze verify --man=no p2p-dird.service p2p-dird.socket p2p-peerd@t1.service \
	p2p-peerd@t1.socket p2p-peerd-control@t1.socket 2>&1)
if [ $? -eq 0 ] && [ -z "$out" ]; then echo "ok 1 - systemd-analyze verify is silent"; else
	echo "not ok 1 - systemd-analyze verify"; echo "$out" | sed 's/^/# /'; fi

n=2
for u in p2p-dird.service p2p-peerd@t1.service; do
	# --threshold is on the 0-100 scale: 15 is an exposure of 1.5.
	if out=$(systemd-analyze security --offline=true --threshold=15 "$u" 2>&1); then
		echo "ok $n - $u exposure $(echo "$out" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p') <= 1.5"
	else
		echo "not ok $n - $u exposure above 1.5"; echo "$out" | tail -n 5 | sed 's/^/# /'
	fi
	n=$((n + 1))
done

if out=$("$b/src/dird/p2p-dird" -c "$s/etc/dird.json" -n 2>&1); then echo "ok 4 - etc/dird.json parses"; else
	echo "not ok 4 - etc/dird.json"; echo "$out" | sed 's/^/# /'; fi
mkdir -p "$tmp/folder"
if out=$("$b/src/peerd/p2p-peerd" -c "$s/etc/peers/example.json" --folder "$tmp/folder" -n 2>&1); then
	echo "ok 5 - etc/peers/example.json parses"; else
	echo "not ok 5 - etc/peers/example.json"; echo "$out" | sed 's/^/# /'; fi

# What make builds for installation names real paths, not placeholders.
left=$(grep -l '@[a-z]*dir@' "$b"/systemd/*.service "$b"/man/*.[0-9] 2>/dev/null)
if [ -z "$left" ] && ls "$b"/systemd/*.service >/dev/null 2>&1; then
	echo "ok 6 - built units and man pages have their paths filled in"
else
	echo "not ok 6 - placeholders left in: $left"
fi
