#!/usr/bin/env bash
# demo/run.sh - pgbatch end to end: 100 articles through an LLM API, on a
# throwaway local cluster.
#
#   bash demo/run.sh          (Debian 12, as root; about 15 s once installed)
#
# The story: 100 SEO articles, each going outline -> draft -> voice -> seo
# (call to action and SEO metadata) through an OpenAI-style chat-completions
# API.  Some requests hit a 429 (with Retry-After) or a 504, article 87 is
# rate limited past its retry budget, two topics are refused with a 400, three
# input rows are malformed.  Without pgbatch, one error at article 87 meant
# rerunning all 100.  With it, pgbatch's background executors send the
# requests, retry the transient failures with backoff (honouring Retry-After),
# park the rest for review, and after the fix re-queue only those, at the
# stage where they failed.
#
# What it does: installs the build dependencies and builds and installs the
# extension (test/lib.sh; output in the work dir's setup.log); starts the
# fake LLM API (test/fake_api.py, 127.0.0.1, a free port, each answer
# delayed by $PGB_DEMO_API_LATENCY_MS ms, default 100) and a PostgreSQL 15
# cluster with pgbatch preloaded (2 executors), listening on 127.0.0.1 only
# (port $PGB_DEMO_PORT, default 54349), both in a mktemp dir; runs the demo
# (demo/*.sql); then stops both by their own pids and removes the dir, also
# when interrupted.  Set PGB_KEEP=1 to keep the dir.  Each wait for the batch
# gives up after $PGB_DEMO_DEADLINE seconds (default 90), printing what is
# stuck, and the script then fails.
set -euo pipefail
# shellcheck source=test/lib.sh
. "$(dirname "$0")/../test/lib.sh"

demo_dir="$PGB_TOP/demo"
port=${PGB_DEMO_PORT:-54349}
api_latency_ms=${PGB_DEMO_API_LATENCY_MS:-100}
deadline_s=${PGB_DEMO_DEADLINE:-90}

# shellcheck source=demo/lib.sh
. "$demo_dir/lib.sh"

diagnose() {
	echo
	echo "${bold}Diagnostics${plain}"
	demo_psql -f "$demo_dir/diagnose.sql" || true
	echo "The fake API's counts (GET /_stats?keys=0):"
	curl -s --max-time 5 "$api_url/_stats?keys=0" || true
	echo
	echo "The end of the server log:"
	tail -n 20 "$work/cluster/server.log" || true
}

# Polls batch.progress and batch.endpoint_status every 0.5 s, one line per
# poll, until no item of demo_batch is pending (waiting, or retrying after a
# backoff or a Retry-After) or running (held by an executor: queued for a
# request slot, or in flight).  Fails after $deadline_s seconds.
watch_batch() {
	local t0 now next deadline line wait_ms
	local status completed pending retrying running failed in_flight sent failures paused
	local fmt='%6s  %-9s %4s %7s %8s %7s %6s  | %9s %5s %8s  %s\n'
	t0=$(now_ms)
	next=$t0
	deadline=$((t0 + deadline_s * 1000))
	printf '%s        ------------------ batch.progress ------------------   ------ batch.endpoint_status, llm ------%s\n' \
		"$dim" "$plain"
	# shellcheck disable=SC2059
	printf "$bold$fmt$plain" time status "done" pending retrying running failed \
		in_flight sent failures paused_until
	while :; do
		line=$(demo_psql -At -F '|' -c "
			SELECT p.status, p.completed, p.pending, p.retrying, p.running, p.failed,
				   e.in_flight, e.requests, e.failures,
				   coalesce(to_char(e.paused_until, 'HH24:MI:SS.MS') || format(' (%s s to go)',
							round(extract(epoch FROM e.paused_until - clock_timestamp()), 1)), '-')
			FROM batch.progress p, batch.endpoint_status e
			WHERE p.name = 'demo_batch' AND e.name = 'llm'")
		IFS='|' read -r status completed pending retrying running failed \
			in_flight sent failures paused <<<"$line"
		now=$(now_ms)
		# shellcheck disable=SC2059
		printf "$fmt" "$(((now - t0) / 1000)).$(((now - t0) % 1000 / 100))s" "$status" \
			"$completed" "$pending" "$retrying" "$running" "$failed" \
			"$in_flight" "$sent" "$failures" "$paused"
		if [ "$pending" = 0 ] && [ "$running" = 0 ]; then
			return 0
		fi
		if [ "$now" -ge "$deadline" ]; then
			echo "${red}${bold}demo_batch still has $pending pending and $running running items after ${deadline_s} s${plain}"
			diagnose
			return 1
		fi
		next=$((next + 500))
		wait_ms=$((next - $(now_ms)))
		if [ "$wait_ms" -gt 0 ]; then
			sleep "$((wait_ms / 1000)).$(printf %03d $((wait_ms % 1000)))"
		else
			next=$(now_ms)
		fi
	done
}

heading "1. An LLM endpoint, four request builders, a pipeline of 4 HTTP stages"
demo_psql -v api_url="$api_url" -f "$demo_dir/setup.sql" 2>&1 | tidy

echo "Waiting for the executors (pgbatch.workers = 2) ..."
for _ in $(seq 1 60); do
	[ "$(demo_psql -At -c 'SELECT count(*) FROM batch.workers')" = 2 ] && break
	sleep 0.5
done
demo_psql -c "
	SELECT w.pid, w.worker, a.backend_type, a.datname, a.wait_event_type, a.wait_event
	FROM batch.workers w LEFT JOIN pg_stat_activity a USING (pid) ORDER BY w.worker"
[ "$(demo_psql -At -c 'SELECT count(*) FROM batch.workers')" = 2 ] ||
	{ diagnose; die "the two executors did not start within 30 s"; }

heading "2. Submit the batch: 100 articles"
demo_psql -f "$demo_dir/submit.sql" 2>&1 | tidy

heading "3. The executors run it: batch.progress and batch.endpoint_status, every 0.5 s"
echo "Nothing calls batch.run(): the two executors claim due items, send their requests"
echo "(8 at most in flight), record the answers, retry 429s and 504s after a backoff"
echo "(a Retry-After also pauses the whole endpoint: paused_until), and fail what cannot"
echo "pass.  pending includes retrying (waiting out a backoff or a Retry-After); running"
echo "counts the items executors hold: waiting for a request slot, or in flight; sent and"
echo "failures count requests."
echo
watch_batch || die "the first pass did not finish within ${deadline_s} s"
echo
echo "Nothing is pending any more.  The 429s and 504s were retried away, except article"
echo "87's, which outlasted its retry budget; what is left failed and waits for review."
echo "The finished articles are done and will not be touched (or paid for) again."

heading "4. Review: what failed, and why"
demo_psql -f "$demo_dir/review.sql"
echo "The same from the shell, with the operators' command (pgbatch status; pgbatch errors demo_batch):"
pgbatch_cli status
pgbatch_cli errors demo_batch

heading "5. Fix the inputs and the ban, then batch.retry_failed('demo_batch')"
demo_psql -f "$demo_dir/fix.sql"

heading "6. The executors pick the re-queued items up where they failed"
watch_batch || die "the second pass did not finish within ${deadline_s} s"

heading "7. Summary"
key87=$(demo_psql -At -c "
	SELECT format('pgbatch-%s-%s-%s-%s', (SELECT system_identifier FROM pg_control_system()),
				  (SELECT oid FROM pg_database WHERE datname = current_database()), i.id, s.position)
	FROM batch.items i
	JOIN batch.batches b ON b.id = i.batch_id
	JOIN batch.stages s ON s.pipeline_id = b.pipeline_id AND s.name = 'seo'
	WHERE b.name = 'demo_batch' AND i.key = 'article-087'")
api_stats=$(curl -sf --max-time 5 "$api_url/_stats?keys=0") ||
	die "GET $api_url/_stats failed"
key_stats=$(curl -sf --max-time 5 "$api_url/_stats?keys=0&key=$key87") ||
	die "GET $api_url/_stats?key=... failed"
demo_psql -v api_stats="$api_stats" -v key_stats="$key_stats" -v key87="$key87" \
	-f "$demo_dir/summary.sql"

result=$(demo_psql -At -F ' ' -c "
	SELECT completed, total FROM batch.progress WHERE name = 'demo_batch'")
if [ "$result" != "100 100" ]; then
	diagnose
	die "expected 100 of 100 articles completed, got: $result (completed total)"
fi
echo
echo "${bold}Done: 100 of 100 articles completed.${plain}"
