#!/usr/bin/env bash
# `make test`: install missing packages, build, stage a private installation
# and run every suite (pg_regress, isolation, TAP) against throwaway clusters.
#
# PostgreSQL refuses to run as root, so when called as root the suites run as
# the `postgres` user in a copy of the tree under /tmp that it owns.
#
# Environment:
#   SUITES="regress isolation tap"   which suites to run (default: all)
#   TAP=test/t/010_mesh.pl           run only these TAP files
#   KEEP=1                           keep the work directory even on success
set -uo pipefail
cd "$(dirname "$0")/.."
top=$PWD

bash scripts/deps.sh || exit 1
make -s -j2 || { echo "mycelium: build failed" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/mycelium-test.XXXXXX")
chmod 755 "$work"
staged=$(bash scripts/stage.sh "$work/install") || { echo "mycelium: staging failed" >&2; exit 1; }
mkdir -p "$work/src"
tar -C "$top" -cf - Makefile mycelium.control sql src test | tar -C "$work/src" -xf -

run_as=()
if [ "$(id -u)" -eq 0 ]; then
	chown -R postgres:postgres "$work"
	run_as=(runuser -u postgres --)
fi

# TAP clusters of concurrent runs on this machine reserve ports in one
# shared directory, so two runs never start nodes on the same port
# a test that died (or was killed by a time-out) can leave its servers
# running: stop every server whose data directory is under $work, after
# each suite and at exit
stop_leftovers() {
	local pidfile dir
	while IFS= read -r pidfile; do
		dir=$(dirname "$pidfile")
		"${run_as[@]}" "$(dirname "$staged")/pg_ctl" -D "$dir" -m immediate -w -t 30 stop >/dev/null 2>&1 &&
			echo "mycelium: stopped a server left running in $dir"
	done < <(find "$work" -name postmaster.pid 2>/dev/null)
}
trap stop_leftovers EXIT

portdir=${PG_TEST_PORT_DIR:-/tmp/mycelium-portlock}
mkdir -p "$portdir" && chmod 1777 "$portdir"

passed=0; failed=0; failed_suites=()
count() {	# count <log> <pass-regex> <fail-regex>
	local p f
	p=$(grep -Ec "$2" "$1"); f=$(grep -Ec "$3" "$1")
	passed=$((passed + p)); failed=$((failed + f))
}

for suite in ${SUITES:-regress isolation tap}; do
	log="$work/$suite.log"
	echo "=== $suite"
	"${run_as[@]}" env TAP="${TAP:-}" PG_TEST_PORT_DIR="$portdir" make -C "$work/src" --no-print-directory \
		"check-$suite" PG_CONFIG="$staged" 2>&1 | tee "$log"
	rc=${PIPESTATUS[0]}
	stop_leftovers
	case $suite in
	regress|isolation)
		count "$log" '\.\.\. ok' '\.\.\. FAILED|failed \(ignored\)'
		for d in "$work/src/regression.diffs" "$work/src/output_iso/regression.diffs"; do
			[ $rc -ne 0 ] && [ -s "$d" ] && { echo "--- $d"; head -c 20000 "$d"; }
		done ;;
	tap)
		total=$(grep -Ec '^test/t/.*\.pl \.+' "$log")
		ok=$(grep -Ec '^test/t/.*\.pl \.+ ok' "$log")
		passed=$((passed + ok)); failed=$((failed + total - ok))
		if [ $rc -ne 0 ]; then
			for l in "$work"/src/tmp_check/log/regress_log_*; do
				[ -f "$l" ] || continue
				grep -q 'not ok\|died\|Dubious' "$l" && { echo "--- $l (tail)"; tail -n 60 "$l"; }
			done
		fi ;;
	esac
	[ $rc -ne 0 ] && { failed_suites+=("$suite"); [ $failed -eq 0 ] && failed=1; }
done

echo
if [ ${#failed_suites[@]} -eq 0 ]; then
	[ -n "${KEEP:-}" ] && echo "mycelium: work directory kept: $work" || rm -rf "$work"
	echo "mycelium: all suites passed"
else
	echo "mycelium: failed suites: ${failed_suites[*]} (work directory: $work)"
fi
echo "$passed passed, $failed failed"
[ ${#failed_suites[@]} -eq 0 ]
