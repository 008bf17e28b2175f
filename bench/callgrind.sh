#!/usr/bin/env bash
# bench/callgrind.sh - instructions an executor runs per HTTP item, counted by
# valgrind's callgrind: prints figures, asserts nothing.
#
#   bash bench/callgrind.sh    (Debian 12, as root; about 2 minutes)
#
# Why: on a small shared virtual machine the CPU time of the same run moves
# by a quarter from one run to the next, so a change of a few per cent to
# the cost of an item cannot be seen in bench/http.sh's rates.  callgrind
# counts instructions, which stay the same from one run to the next (within
# about 1 %), so two builds can be compared.  The kernel's share (system
# calls, page faults) is not counted.
#
# How: a throwaway PostgreSQL 15 cluster runs under valgrind --tool=callgrind
# (every process the postmaster forks is counted, each into its own file),
# with pgbatch preloaded, one executor (pgbatch.workers 1, claim_batch_size
# 100, max_http_in_flight 64), autovacuum off, durable commits; nginx (one
# worker, loopback, answering {"ok":true}) is the API.  A 1-stage HTTP
# pipeline (one POST per item).  Each round: VACUUM ANALYZE of the batch
# tables and a CHECKPOINT, a fresh executor (the one running is stopped;
# the launcher starts another), one batch of $PGB_CG_ITEMS (4,000) items,
# run to the end, then the executor is stopped, which writes its counts.
# First an idle round (an executor started and stopped with no batch) gives
# the fixed cost of an executor's life, taken off each round's count.
# Prints each round's instructions per item and their median, and for the
# median round the instructions per item inside the main steps (inclusive).
#
# Knobs (environment): PGB_CG_ITEMS, PGB_CG_ROUNDS (3), PGB_CG_PORT (54352),
# PGB_CG_NGINX_PORT (18095), PGB_BUILD=0 (use the installed extension),
# PGB_KEEP=1 to keep the work dir (the callgrind files, for
# callgrind_annotate).  Each server is stopped on exit by its own pid.
set -euo pipefail
. "$(dirname "$0")/../test/lib.sh"
. "$(dirname "$0")/lib.sh"

port=${PGB_CG_PORT:-54352}
nginx_port=${PGB_CG_NGINX_PORT:-18095}
items=${PGB_CG_ITEMS:-4000}
rounds=${PGB_CG_ROUNDS:-3}

started=$(date +%s)
work=$(mktemp -d /tmp/pgbatch-callgrind-bench.XXXXXX)
mkdir -p "$work/cluster" "$work/cg" "$work/nginx"
chown -R postgres: "$work"
cluster="$work/cluster"
nginx_pid=''

cleanup() {
	local status=$?
	pgb_cluster_stop "$cluster"
	stop_pid "$nginx_pid"
	if [ "${PGB_KEEP:-}" = "" ]; then rm -rf "$work"; else echo "kept $work"; fi
	exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! { pgb_install_deps && pgb_apt_install valgrind nginx-light curl &&
	if [ "${PGB_BUILD:-1}" != 0 ]; then pgb_build_install; fi; } >"$work/setup.log" 2>&1; then
	echo "setup failed; the end of $work/setup.log:" >&2
	tail -n 40 "$work/setup.log" >&2
	exit 1
fi
for p in "$port" "$nginx_port"; do
	if ss -Htln "sport = :$p" 2>/dev/null | grep -q .; then
		echo "port $p on this machine is taken; set PGB_CG_PORT / PGB_CG_NGINX_PORT" >&2
		exit 1
	fi
done

bench_nginx_conf "$work/nginx" "$nginx_port"
nginx -e "$work/nginx/error.log" -p "$work/nginx/" -c "$work/nginx/nginx.conf" >"$work/nginx/stdout" 2>&1 &
nginx_pid=$!

# the cluster, its postmaster under callgrind (pg_ctl stops it by its pid)
pgb_as_postgres "$PG_BIN/initdb" -D "$cluster/data" -A trust -U postgres --no-sync >"$cluster/initdb.log" 2>&1
cat >>"$cluster/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$cluster'
shared_preload_libraries = 'pgbatch'
pgbatch.workers = 1
pgbatch.claim_batch_size = 100
pgbatch.max_http_in_flight = 64
pgbatch.max_items_per_call = 1000000
shared_buffers = 256MB
max_wal_size = 4GB
autovacuum = off
synchronous_commit = on
EOF
pgb_as_postgres bash -c "exec valgrind --tool=callgrind --callgrind-out-file='$work/cg/cg.%p' \
	'$PG_BIN/postgres' -D '$cluster/data' >'$cluster/server.log' 2>&1" &
q() { pgb_psql "$cluster" "$port" -d postgres -qAt "$@"; }
for i in $(seq 1 240); do
	q -c "SELECT 1" >/dev/null 2>&1 && break
	[ "$i" = 240 ] && { echo "the cluster did not start under callgrind:" >&2; tail -20 "$cluster/server.log" >&2; exit 1; }
	sleep 0.5
done
q -v url="http://127.0.0.1:$nginx_port" >/dev/null <<'EOF'
CREATE EXTENSION pgbatch;
SELECT batch.create_endpoint('nginx', :'url', max_concurrency => 256);
SELECT batch.create_pipeline('http_1', '[{"name": "call", "http": {"endpoint": "nginx", "method": "POST", "path": "/x"}}]');
EOF

executor_pid() { q -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pgbatch executor'"; }
# fresh_executor: stops the executor running (if any) and waits for the
# launcher's next one; prints its pid
fresh_executor() {
	local old pid
	old=$(executor_pid)
	[ -z "$old" ] || q -c "SELECT pg_terminate_backend($old)" >/dev/null
	for _ in $(seq 1 240); do
		pid=$(executor_pid)
		if [ -n "$pid" ] && [ "$pid" != "$old" ]; then
			sleep 3 # its start, under callgrind
			echo "$pid"
			return 0
		fi
		sleep 0.5
	done
	echo "no executor started" >&2
	return 1
}
# instructions PID: stops the executor, waits for its callgrind file and
# prints its total instruction count
instructions() {
	local pid=$1 f="$work/cg/cg.$1"
	q -c "SELECT pg_terminate_backend($pid)" >/dev/null
	for _ in $(seq 1 240); do
		if [ -s "$f" ] && grep -q '^totals:' "$f"; then
			awk '/^totals:/ { print $2; exit }' "$f"
			return 0
		fi
		sleep 0.5
	done
	echo "no callgrind file for executor $pid" >&2
	return 1
}

echo "pgbatch executor instructions per HTTP item (callgrind)       $(date -u '+%Y-%m-%d %H:%M UTC')"
code=$(git -C "$PGB_TOP" rev-parse --short HEAD 2>/dev/null || echo "not a git checkout")
dirty=$(git -C "$PGB_TOP" status --porcelain 2>/dev/null | grep -c . || true)
[ "$dirty" != 0 ] && code="$code, plus $dirty changed or new files in the working tree"
printf '%-10s %s\n' "code" "$code"
printf '%-10s %s, %s\n' "tools" "$(valgrind --version)" "$(q -c "SELECT 'PostgreSQL ' || current_setting('server_version')")"
printf '%-10s %s\n' "setup" "1 executor, claim 100, 64 in flight, nginx on loopback, $items items a round, autovacuum off"
echo

pid=$(fresh_executor)
pid=$(fresh_executor) # the first one had been idle for an unknown time
idle=$(instructions "$pid")
printf '   an executor started and stopped idle: %s instructions (taken off each round)\n\n' "$idle"
printf '   %-6s %14s %12s %10s\n' "round" "instructions" "per item" "items/s"
per=()
for k in $(seq 1 "$rounds"); do
	q -c "VACUUM ANALYZE batch.items" -c "VACUUM ANALYZE batch.queue" -c "VACUUM ANALYZE batch.attempts" \
		-c "VACUUM ANALYZE batch.outputs" -c "CHECKPOINT" >/dev/null
	pid=$(fresh_executor)
	rate=$(q -v n="$items" <<'EOF'
SELECT batch.submit('http_1', (SELECT jsonb_agg(jsonb_build_object('n', g)) FROM generate_series(1, :n) g)) AS bid \gset
SELECT extract(epoch FROM clock_timestamp()) AS t0 \gset
DO $$ BEGIN LOOP PERFORM pg_sleep(0.2); COMMIT;
	EXIT WHEN (SELECT pending + running + retrying FROM batch.progress ORDER BY id DESC LIMIT 1) = 0; END LOOP; END $$;
SELECT round(:n / (extract(epoch FROM clock_timestamp()) - :t0)) WHERE (SELECT completed FROM batch.progress WHERE id = :bid) = :n;
EOF
	)
	[ -n "$rate" ] || { echo "round $k: the batch did not complete" >&2; exit 1; }
	ir=$(instructions "$pid")
	per+=("$(((ir - idle) / items)) $pid")
	printf '   %-6s %14s %12s %10s\n' "$k" "$ir" "$(((ir - idle) / items))" "$rate"
done
mid=$(printf '%s\n' "${per[@]}" | sort -n | sed -n "$(((${#per[@]} + 1) / 2))p")
printf '\n   median: %s instructions per item (round of executor %s)\n\n' "${mid% *}" "${mid#* }"

echo "   inside the median round, per item (inclusive):"
callgrind_annotate --inclusive=yes --threshold=100 --auto=no "$work/cg/cg.${mid#* }" 2>/dev/null |
	awk -v n="$items" '
		/^ *[0-9,]+ \(/ {
			x = $1; gsub(",", "", x)
			f = $3; sub(/^.*:/, "", f)
			if (f in want && !(f in seen)) { seen[f] = 1; printf "   %10.0f  %s (%s)\n", x / n, f, want[f] }
		}
		BEGIN {
			want["pgb_execute_claimed"] = "a claimed chunk: stages run, outcomes written"
			want["pgb_outcome_flush"] = "the outcome statements"
			want["pgbatch_queue_items_1_4"] = "the queue trigger"
			want["pgbatch_count_items_1_4"] = "the counting trigger"
			want["pgb_claim_locked"] = "the claims"
			want["pgb_http_stage_record"] = "reading the responses"
			want["pgb_http_dispatch"] = "handing requests to libcurl"
			want["pgb_http_wait"] = "waiting, reading sockets"
			want["CommitTransactionCommand"] = "commits"
		}'
echo
echo "done in $(($(date +%s) - started)) s"
