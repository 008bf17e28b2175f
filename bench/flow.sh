#!/usr/bin/env bash
# bench/flow.sh - flow and time as an operator watching a batch sees them:
# prints figures, asserts nothing about speed.
#
#   bash bench/flow.sh         (Debian 12, as root; about 3 minutes)
#
# On a throwaway PostgreSQL 15 cluster with pgbatch preloaded (2 executors,
# durable commits) and the fake API (test/fake_api.py) on loopback:
#   1. first completion: a 2-stage pipeline (an HTTP stage against the fake
#      API answering after 200 ms, then a SQL no-op stage), $PGB_FLOW_ITEMS
#      items (10,000): seconds from the submit's commit to the first
#      completed item, to 10 % and to all of them, and how many HTTP stage
#      attempts were done when the first item completed;
#   2. submit -> first request: single-item batches submitted one at a time
#      to idle executors; from the submit's commit to the request's arrival
#      at the fake API (its own clock, the same machine), p50 / p99 / max;
#   3. retry lateness: items meet a 503 once and are due again 1 s later
#      (jitter 0): when the retry started minus when it was due, p50 / p99 /
#      max, with idle executors; then due again 5 s later, behind a
#      $PGB_FLOW_BACKLOG-item (100,000) backlog of no-op SQL items of another
#      batch, submitted once the retries are scheduled (so it is due before
#      them and still waiting when they come due).
#
# Knobs (environment): PGB_FLOW_ITEMS, PGB_FLOW_BACKLOG, PGB_FLOW_SUBMITS
# (50), PGB_FLOW_RETRIES (200), PGB_FLOW_PORT (54350), PGB_KEEP=1 to keep the
# work dir.  Each server is stopped on exit by its own pid (the cluster
# through pg_ctl).
set -euo pipefail
. "$(dirname "$0")/../test/lib.sh"
. "$(dirname "$0")/lib.sh"

port=${PGB_FLOW_PORT:-54350}
items=${PGB_FLOW_ITEMS:-10000}
backlog=${PGB_FLOW_BACKLOG:-100000}
submits=${PGB_FLOW_SUBMITS:-50}
retries=${PGB_FLOW_RETRIES:-200}

started=$(date +%s)
work=$(mktemp -d /tmp/pgbatch-flow-bench.XXXXXX)
chown postgres: "$work"
cluster="$work/cluster"
api_pid=

cleanup() {
	local status=$?
	pgb_cluster_stop "$cluster"
	if [ -n "$api_pid" ] && kill -0 "$api_pid" 2>/dev/null; then
		kill -TERM "$api_pid" 2>/dev/null || true
		wait "$api_pid" 2>/dev/null || true
	fi
	if [ "${PGB_KEEP:-}" = "" ]; then rm -rf "$work"; else echo "kept $work"; fi
	exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! { pgb_install_deps && pgb_apt_install python3 curl && pgb_build_install; } >"$work/setup.log" 2>&1; then
	echo "setup failed; the end of $work/setup.log:" >&2
	tail -n 40 "$work/setup.log" >&2
	exit 1
fi

python3 "$PGB_TOP/test/fake_api.py" --port 0 --portfile "$work/api.port" --pidfile "$work/api.pid" \
	--key-cap 2000000 >"$work/api.out" 2>&1 &
api_pid=$!
for _ in $(seq 1 100); do
	[ -s "$work/api.port" ] && break
	sleep 0.1
done
api_url="http://127.0.0.1:$(cat "$work/api.port")"

pgb_cluster_start "$cluster" "$port" "${PGB_BENCH_SETTINGS[@]}" shared_preload_libraries=pgbatch \
	pgbatch.workers=2 pgbatch.poll_interval=5s pgbatch.circuit_threshold=0
q() { pgb_psql "$cluster" "$port" -d postgres -qAt -F'|' "$@" </dev/null; }
# waits until batch $1 has finished; prints nothing
wait_done() {
	for _ in $(seq 1 3000); do
		case "$(q -c "SELECT status FROM batch.progress WHERE name = '$1'")" in
		completed | partial | failed) return 0 ;;
		esac
		sleep 0.1
	done
	echo "   !! batch $1 did not finish in 300 s" >&2
}

pgb_psql "$cluster" "$port" -d postgres -qAt -f - <<EOF >/dev/null
CREATE EXTENSION pgbatch;
CREATE FUNCTION public.noop(p jsonb, o jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT ''{}''::jsonb';
SELECT batch.create_endpoint('api', '$api_url', max_concurrency => 128);
SELECT batch.create_pipeline('two', '[{"name": "call", "http": {"endpoint": "api", "path": "/v1/slow"}},
									  {"name": "finish", "sql": "public.noop"}]');
SELECT batch.create_pipeline('one', '[{"name": "call", "http": {"endpoint": "api", "path": "/v1/one"}}]');
SELECT batch.create_pipeline('retry', '[{"name": "call", "http": {"endpoint": "api", "path": "/v1/retry"}}]',
	retry => '{"max_retries": 3, "backoff_base": "1 s", "backoff_factor": 1, "jitter": 0}');
SELECT batch.create_pipeline('retry5', '[{"name": "call", "http": {"endpoint": "api", "path": "/v1/retry"}}]',
	retry => '{"max_retries": 3, "backoff_base": "5 s", "backoff_factor": 1, "jitter": 0}');
SELECT batch.create_pipeline('sql', '[{"name": "s", "sql": "public.noop"}]');
EOF
q -c "SELECT 1" >/dev/null
sleep 1

echo "pgbatch flow and time benchmark          $(date -u '+%Y-%m-%d %H:%M UTC')"
printf '%s\n' "--------------------------------------------------------------------------------------------"
code=$(git -C "$PGB_TOP" rev-parse --short HEAD 2>/dev/null || echo "not a git checkout")
dirty=$(git -C "$PGB_TOP" status --porcelain 2>/dev/null | grep -c . || true)
[ "$dirty" != 0 ] && code="$code, plus $dirty changed or new files in the working tree"
printf '%-13s %s\n' "code" "$code"
printf '%-13s %s CPUs, %s GB RAM; load average %s at start\n' "machine" "$(nproc)" \
	"$(awk '/MemTotal/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-13s %s\n' "server" "$(q -c "SELECT 'PostgreSQL ' || current_setting('server_version')"), pgbatch.workers 2, poll_interval 5 s, durable commits"
printf '%-13s %s\n' "fake API" "$api_url (test/fake_api.py); endpoint max_concurrency 128"

# ---------------------------------------------------------------- 1.
echo
echo "1. First completion: $items items, HTTP stage (answer after 200 ms) then a SQL stage"
curl -s -X POST -d '{"latency_ms": 200}' "$api_url/_control/rules" >/dev/null
t0=$(q -c "SELECT batch.submit('two', (SELECT jsonb_agg(jsonb_build_object('n', i)) FROM generate_series(1, $items) i), name => 'first')" \
	-c "SELECT extract(epoch FROM clock_timestamp())" | tail -1)
wait_done first
curl -s -X POST -d '{"latency_ms": 0}' "$api_url/_control/rules" >/dev/null
q -c "WITH b AS (SELECT id FROM batch.batches WHERE name = 'first'),
	  done AS (SELECT i.finished_at, row_number() OVER (ORDER BY i.finished_at) AS k, count(*) OVER () AS n
			   FROM batch.items i, b WHERE i.batch_id = b.id AND i.status = 'completed'),
	  first AS (SELECT min(finished_at) AS t FROM done)
	  SELECT round((extract(epoch FROM (SELECT t FROM first)) - $t0)::numeric, 2),
			 round((extract(epoch FROM (SELECT min(finished_at) FROM done WHERE k >= ceil(n * 0.1))) - $t0)::numeric, 2),
			 round((extract(epoch FROM (SELECT max(finished_at) FROM done)) - $t0)::numeric, 2),
			 (SELECT count(*) FROM batch.attempts a, b WHERE a.batch_id = b.id AND a.stage = 'call'
			  AND a.finished_at < (SELECT t FROM first))" |
	while IFS='|' read -r first tenth all before; do
		printf '   first item completed after %s s (target: within 2 s), 10 %% after %s s, all after %s s\n' "$first" "$tenth" "$all"
		printf '   HTTP stage attempts done when the first item completed: %s of %s\n' "$before" "$items"
	done

# ---------------------------------------------------------------- 2.
echo
echo "2. Submit commit -> first HTTP request, idle executors: $submits single-item batches, one at a time"
: >"$work/submits"
for i in $(seq 1 "$submits"); do
	q -c "SELECT batch.submit('one', '[{\"n\": $i}]', name => 'one_$i')" \
		-c "SELECT '$i|' || extract(epoch FROM clock_timestamp())" | tail -1 >>"$work/submits"
	sleep 0.2
done
wait_done "one_$submits"
q -c "SELECT b.name, i.id FROM batch.batches b JOIN batch.items i ON i.batch_id = b.id WHERE b.name LIKE 'one\_%'" >"$work/one_items"
sysid=$(q -c "SELECT system_identifier FROM pg_control_system()")
dboid=$(q -c "SELECT oid FROM pg_database WHERE datname = current_database()")
curl -s "$api_url/_stats" >"$work/stats.json"
python3 - "$work/submits" "$work/one_items" "$work/stats.json" "$sysid" "$dboid" <<'PYEOF'
import json, sys
submits = dict(l.strip().split("|") for l in open(sys.argv[1]) if l.strip())
items = dict(l.strip().split("|") for l in open(sys.argv[2]) if l.strip())
keys = json.load(open(sys.argv[3]))["keys"]
lat = []
for name, item in items.items():
    k = "pgbatch-%s-%s-%s-1" % (sys.argv[4], sys.argv[5], item)
    if k in keys and keys[k]["requests"]:
        lat.append((keys[k]["requests"][0][0] - float(submits[name.split("_")[1]])) * 1000)
lat.sort()
pick = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
print("   %d requests: p50 %.1f ms, p99 %.1f ms, max %.1f ms (target: p50 <= 10 ms)"
      % (len(lat), pick(0.5), pick(0.99), lat[-1]))
PYEOF

# ---------------------------------------------------------------- 3.
lateness() {
	q -c "SELECT count(*),
				 round((1000 * percentile_cont(0.5) WITHIN GROUP (ORDER BY l))::numeric, 1),
				 round((1000 * percentile_cont(0.99) WITHIN GROUP (ORDER BY l))::numeric, 1),
				 round((1000 * max(l))::numeric, 1)
		  FROM (SELECT extract(epoch FROM a2.started_at - (a1.finished_at + interval '$3 s')) AS l
				FROM batch.attempts a1
				JOIN batch.attempts a2 ON a2.item_id = a1.item_id AND a2.stage = a1.stage AND a2.attempt = 2
				JOIN batch.batches b ON b.id = a1.batch_id
				WHERE b.name = '$1' AND a1.attempt = 1) s" |
		while IFS='|' read -r n p50 p99 max; do
			printf '   %-40s %5s retries: p50 %6s ms, p99 %6s ms, max %6s ms\n' "$2" "$n" "$p50" "$p99" "$max"
		done
}
echo
echo "3. Retry lateness (retry started - due), $retries items meeting a 503 once, due again after 1 s"
q -c "SELECT batch.submit('retry', (SELECT jsonb_agg(jsonb_build_object('n', i, 'fault', '503x1')) FROM generate_series(1, $retries) i), name => 'late_idle')" >/dev/null
wait_done late_idle
lateness late_idle "idle executors (target p99 <= 50 ms)" 1
# the retries (due 5 s after their failure) are scheduled first; the backlog,
# submitted then, is due before them and still waiting when they come due
q -c "SELECT batch.submit('retry5', (SELECT jsonb_agg(jsonb_build_object('n', i, 'fault', '503x1')) FROM generate_series(1, $retries) i), name => 'late_busy')" >/dev/null
for _ in $(seq 1 300); do
	[ "$(q -c "SELECT count(*) FROM batch.attempts a JOIN batch.batches b ON b.id = a.batch_id WHERE b.name = 'late_busy'")" -ge "$retries" ] && break
	sleep 0.01
done
q -c "SELECT batch.submit('sql', (SELECT jsonb_agg(jsonb_build_object('n', i)) FROM generate_series(1, $backlog) i), name => 'backlog')" >/dev/null
wait_done late_busy
wait_done backlog
lateness late_busy "behind $(printf "%'d" "$backlog") SQL items (target p99 <= 250 ms)" 5
q -c "SELECT count(*) FROM batch.items i JOIN batch.batches b ON b.id = i.batch_id
	  WHERE b.name = 'backlog' AND i.finished_at > (SELECT min(a.finished_at) + interval '5 s'
		FROM batch.attempts a JOIN batch.batches r ON r.id = a.batch_id WHERE r.name = 'late_busy')" |
	while read -r n; do
		printf '   (%s backlog items were still waiting when the first retry came due)\n' "$(printf "%'d" "$n")"
	done

echo
printf '%s\n' "--------------------------------------------------------------------------------------------"
echo "done in $(($(date +%s) - started)) s; load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
