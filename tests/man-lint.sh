#!/bin/sh
# SPDX-License-Identifier: MIT
# Every installed manual page is clean under `mandoc -T lint -W warning`.
# TAP: one test per page.
set -u
# The pages as built, with configured paths filled in.
pages=$(cd "$P2P_BUILDDIR" && ls man/*.[0-9] 2>/dev/null)
if ! command -v mandoc >/dev/null; then
	echo "1..0 # SKIP mandoc is not installed"
	exit 0
fi
n=0
for p in $pages; do n=$((n + 1)); done
echo "1..$n"
i=0
for p in $pages; do
	i=$((i + 1))
	if out=$(mandoc -T lint -W warning "$P2P_BUILDDIR/$p" 2>&1) && [ -z "$out" ]; then
		echo "ok $i - $p"
	else
		echo "not ok $i - $p"
		echo "$out" | sed 's/^/# /'
	fi
done
