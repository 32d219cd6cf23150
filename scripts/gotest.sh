#!/bin/sh
# Runs `go test` with the given arguments, keeping the whole output in var/test.log.
# When it fails, the lines that say why (failed tests, a panic, and the tests still
# running when -timeout fired) are printed again at the end, where a CI log's tail shows them.
set -u
GO=${GO:-go}
mkdir -p var
log=var/test.log
: >"$log" # exists before tail opens it
"$GO" test "$@" >"$log" 2>&1 &
pid=$!
tail -n +1 -f --pid="$pid" "$log"
wait "$pid"
status=$?
if [ "$status" -ne 0 ]; then
	echo
	echo "=== go test failed (exit $status); the whole output is in $log. Summary:"
	grep -E -e '^(--- FAIL|FAIL|panic:)' -e '^\s+--- FAIL' "$log"
	sed -n '/running tests:/,/^$/p' "$log"
	grep -E -A3 '^\s+[a-z_0-9]+_test\.go:[0-9]+: ' "$log" | head -60
fi
exit "$status"
