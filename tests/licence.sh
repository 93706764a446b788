#!/bin/sh
# SPDX-License-Identifier: MIT
# The tree is MIT-licensed: LICENSE says so, and every source file carries
# an SPDX line saying so in its first lines. TAP: one test per part.
set -u
src=${P2P_SRCDIR:-.}
echo "1..2"
if grep -q '^MIT License' "$src/LICENSE" 2>/dev/null; then
	echo "ok 1 - LICENSE is the MIT licence"
else
	echo "not ok 1 - LICENSE is the MIT licence"
fi
missing=$(cd "$src" && find src proto tests bench fuzz scripts systemd man \
	-type f \( -name '*.c' -o -name '*.h' -o -name '*.py' -o -name '*.sh' -o -name '*.am' \
	-o -name '*.proto' -o -name '*.go' -o -name '*.varlink' -o -name '*.in' \) 2>/dev/null |
	while read -r f; do
		head -n 5 "$f" | grep -q 'SPDX-License-Identifier: MIT' || echo "$f"
	done)
if [ -z "$missing" ]; then
	echo "ok 2 - every source file has an SPDX-License-Identifier line"
else
	echo "not ok 2 - every source file has an SPDX-License-Identifier line"
	echo "$missing" | sed 's/^/# missing: /'
fi
