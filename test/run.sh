#!/usr/bin/env bash
# test/run.sh - runs every pgbatch test on this machine: installs what it needs
# (Debian 12, as root; Chromium too, for the web page's test), builds and
# installs the extension, checks the shape of src/ (test/structure.sh), then,
# as the postgres user on a throwaway cluster, runs the pg_regress suite (sql/, expected/) and the
# TAP tests (test/t/) through `make installcheck`.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

pgb_install_deps
pgb_install_browser
pgb_build_install
# the shape of src/ (no call cycles, no file over 800 lines), from the objects just built
bash "$PGB_TOP/test/structure.sh" "$PGB_TOP/src"

work=$(mktemp -d /tmp/pgbatch-test.XXXXXX)
chown postgres: "$work"
# the tests run as postgres, in a copy of the tree it owns
cp -a "$PGB_TOP"/. "$work/src"
chown -R postgres: "$work/src"
port=${PGB_TEST_PORT:-54329}

cleanup() {
	pgb_cluster_stop "$work/cluster"
	if [ "${PGB_KEEP:-}" = "" ]; then rm -rf "$work"; else echo "kept $work"; fi
}
trap cleanup EXIT

# test/t/013_exporter.pl runs Debian's prometheus-postgres-exporter, unpacked
# here, not installed (the package would start a daemon)
exporter=$(pgb_fetch_exporter "$work/exporter")

pgb_cluster_start "$work/cluster" "$port"
status=0
pgb_as_postgres env PGHOST="$work/cluster" PGPORT="$port" PGUSER=postgres PGB_EXPORTER="$exporter" \
	make -C "$work/src" -s PG_CONFIG="$PG_BIN/pg_config" PROVE_FLAGS=--timer installcheck || status=$?
if [ $status -ne 0 ] && [ -f "$work/src/regression.diffs" ]; then
	cat "$work/src/regression.diffs"
fi
for f in "$work"/src/tmp_check/log/*; do
	[ $status -ne 0 ] && [ -f "$f" ] && { echo "=== $f"; tail -n 60 "$f"; }
done
exit $status
