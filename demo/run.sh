#!/usr/bin/env bash
# demo/run.sh - pgbatch end to end, on a throwaway local cluster.
#
#   bash demo/run.sh          (Debian 12, as root; takes a few seconds)
#
# The story: 100 SEO articles, each going outline -> draft -> voice -> seo
# through an LLM API.  Some calls hit a 429 or 504, two topics are refused,
# three input rows are malformed.  Without pgbatch, one error at article 87
# meant rerunning all 100.  With it, each failed stage is retried on its own
# with backoff, the rest are parked for review, fixed, and re-queued where
# they failed.  The API is simulated by SQL functions (demo/setup.sql).
#
# What it does: installs the build dependencies and builds and installs the
# extension (test/lib.sh; output in the work dir's setup.log), starts a
# PostgreSQL 15 cluster in a mktemp dir listening on 127.0.0.1 only (port
# $PGB_DEMO_PORT, default 54349), runs the demo against it, then stops the
# cluster and removes the dir.  Set PGB_KEEP=1 to keep the dir.
set -euo pipefail
# shellcheck source=test/lib.sh
. "$(dirname "$0")/../test/lib.sh"

demo_dir="$PGB_TOP/demo"
port=${PGB_DEMO_PORT:-54349}

if [ -t 1 ]; then
	bold=$'\e[1m' dim=$'\e[2m' plain=$'\e[0m'
else
	bold='' dim='' plain=''
fi

heading() {
	printf '\n%s== %s ==%s\n\n' "$bold" "$*" "$plain"
}

work=$(mktemp -d /tmp/pgbatch-demo.XXXXXX)
setup_done=
# keep the terminal on fds 3 and 4: an error inside a redirected block runs
# the exit trap with that block's redirections still in place
exec 3>&1 4>&2
cleanup() {
	local status=$?
	exec 1>&3 2>&4
	if [ -z "$setup_done" ]; then
		echo "setup failed; the end of $work/setup.log:" >&2
		tail -n 40 "$work/setup.log" >&2 2>/dev/null || true
		if [ -f "$work/cluster/server.log" ]; then
			echo "and of the server log (is port $port free? set PGB_DEMO_PORT to use another):" >&2
			tail -n 20 "$work/cluster/server.log" >&2
		fi
	fi
	pgb_cluster_stop "$work/cluster"
	if [ -n "${PGB_KEEP:-}" ]; then
		echo "kept $work (server log: $work/cluster/server.log)"
	else
		rm -rf "$work"
	fi
	exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

heading "Setup"
echo "Installing dependencies and building pgbatch (log: $work/setup.log) ..."
{
	pgb_install_deps
	pgb_build_install
} >"$work/setup.log" 2>&1
# the cluster runs as postgres, which must reach its directory
chown postgres: "$work"
echo "Starting a throwaway PostgreSQL 15 cluster on 127.0.0.1:$port ..."
pgb_cluster_start "$work/cluster" "$port" >>"$work/setup.log" 2>&1
setup_done=1

# psql against the demo database: quiet, no psqlrc, stop on the first error
demo_psql() {
	pgb_psql "$work/cluster" "$port" -d pgbatch_demo -q -P footer=off "$@"
}
pgb_psql "$work/cluster" "$port" -q -c 'CREATE DATABASE pgbatch_demo'

heading "1. An app schema, a pipeline of 4 stages, a batch of 100 articles"
demo_psql -f "$demo_dir/setup.sql" 2>&1 | sed -E 's/^psql:[^ ]+:[0-9]+: (NOTICE|INFO|WARNING): /\1: /'

# Calls batch.run('demo_batch') until nothing is left to run, one line per
# call: what that call did, then the batch's counts from batch.progress.
# batch.run does all the work that is due now and returns; when items wait
# for a retry it says when the next one is due, and we sleep until then.
run_until_done() {
	local round=0 t0=${EPOCHREALTIME//[^0-9]/} ms line
	local stages completed retries failed wait
	local status ncompleted pending retrying nfailed
	local fmt='%5s %7s   %6s  %4s  %7s  %6s   %-9s %4s  %7s  %8s  %6s   %s\n'
	printf '%s                %s   %s%s\n' "$dim" \
		'--------- batch.run() -------' '------------- batch.progress ------------' "$plain"
	# shellcheck disable=SC2059
	printf "$bold$fmt$plain" round time stages "done" retries failed status "done" pending retrying failed next_due
	while :; do
		round=$((round + 1))
		line=$(demo_psql -At -F ' ' -c "
			SELECT stages_run, items_completed, retries_scheduled, items_failed,
				   CASE WHEN next_due IS NULL THEN '-'
						ELSE greatest(extract(epoch FROM next_due - clock_timestamp()), 0)::numeric(8, 3)::text
				   END
			FROM batch.run('demo_batch')")
		read -r stages completed retries failed wait <<<"$line"
		line=$(demo_psql -At -F ' ' -c "
			SELECT status, completed, pending, retrying, failed
			FROM batch.progress WHERE name = 'demo_batch'")
		read -r status ncompleted pending retrying nfailed <<<"$line"
		ms=$(((${EPOCHREALTIME//[^0-9]/} - t0) / 1000))
		# shellcheck disable=SC2059
		printf "$fmt" "$round" "$((ms / 1000)).$(printf %02d $((ms % 1000 / 10)))s" \
			"$stages" "$completed" "$retries" "$failed" \
			"$status" "$ncompleted" "$pending" "$retrying" "$nfailed" \
			"$([ "$wait" = - ] && echo 'none' || echo "in ${wait}s")"
		if [ "$wait" = - ]; then
			break
		fi
		sleep "$wait"
	done
}

heading "2. Run: SELECT * FROM batch.run('demo_batch'), again after each backoff"
echo "Each row is one call.  batch.run() runs every stage that is due, retries a 429"
echo "or 504 (SQLSTATE PB001) after a backoff, and never sleeps through one: it"
echo "returns next_due, and this script sleeps until then."
echo
run_until_done
echo
echo "Nothing is due any more.  The 429s and 504s were retried away, except one that"
echo "outlasted its retry budget; what is left failed and waits for review.  The"
echo "finished articles are done and will not be touched (or paid for) again."

heading "3. Review: what failed, and why"
demo_psql -f "$demo_dir/review.sql"

heading "4. Fix the inputs and the rule, then batch.retry_failed('demo_batch')"
demo_psql -f "$demo_dir/fix.sql"

heading "5. Run again"
run_until_done

heading "6. Summary"
demo_psql -f "$demo_dir/summary.sql"
