#!/usr/bin/env bash
# bench/lib.sh - what the benchmarks share; source it after test/lib.sh.
#
#   PGB_BENCH_SETTINGS  server settings for this 2-core / 24 GB machine:
#                       memory and checkpoints sized for bulk work, commits
#                       durable (fsync and synchronous_commit stay on), and
#                       1,000,000-item batches submitted in one call
#   stop_pid PID        stops a child of the script by its pid (TERM, up to 5 s), and
#                       reaps it; nothing if PID is empty or gone
#   bench_settings_sql "NAME ..."
#                       a query for those server settings as name=value, in that
#                       order, sizes in readable units
#   bench_log_summary LOG
#                       the server log's errors and warnings, counted, numbers
#                       replaced by N (the executors' stop on a reload left out)
#   bench_nginx_conf DIR PORT [TOP] [SERVERS]
#                       writes DIR/nginx.conf: loopback only, one worker, keep-alive
#                       without limits, answering {"ok":true} on 127.0.0.1:PORT;
#                       TOP goes before the main context's settings (load_module),
#                       SERVERS inside the http block after that server

# shellcheck disable=SC2034
PGB_BENCH_SETTINGS=(
	shared_buffers=1GB
	effective_cache_size=16GB
	work_mem=32MB
	maintenance_work_mem=1GB
	wal_buffers=64MB
	max_wal_size=4GB
	min_wal_size=1GB
	checkpoint_timeout=1h
	checkpoint_completion_target=0.9
	synchronous_commit=on
	random_page_cost=1.1
	pgbatch.max_items_per_call=1000000
)

bench_nginx_conf() {
	local dir=$1 port=$2 top=${3:-} servers=${4:-}
	cat >"$dir/nginx.conf" <<EOF
# the benchmark's nginx: loopback only, one worker, answers every request
$top
worker_processes 1;
worker_rlimit_nofile 16384;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 12000; }
http {
	access_log off;
	client_body_temp_path $dir/body;
	proxy_temp_path $dir/proxy;
	fastcgi_temp_path $dir/fastcgi;
	uwsgi_temp_path $dir/uwsgi;
	scgi_temp_path $dir/scgi;
	keepalive_requests 100000000;
	keepalive_timeout 600s;
	server {
		listen 127.0.0.1:$port;
		location / { default_type application/json; return 200 '{"ok":true}'; }
	}
$servers
}
EOF
}

stop_pid() {
	local pid=$1
	[ -n "$pid" ] || return 0
	kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 1 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	wait "$pid" 2>/dev/null || true
}

bench_log_summary() {
	local errs
	errs=$(grep -aE '^[0-9-]+ [0-9:.]+ [A-Z]+ \[[0-9]+\] (ERROR|FATAL|PANIC|WARNING):' "$1" |
		grep -av 'terminating background worker "pgbatch executor" due to administrator command' |
		sed -E 's/^[0-9-]+ [0-9:.]+ [A-Z]+ \[[0-9]+\] //' | sed -E 's/[0-9]+/N/g' | sort | uniq -c | sort -rn || true)
	if [ -n "$errs" ]; then
		echo "server log: errors and warnings (numbers replaced by N)"
		head -8 <<<"$errs" | sed 's/^/   /' | cut -c1-110
	else
		echo "server log: no errors or warnings"
	fi
}

bench_settings_sql() {
	cat <<EOF
SELECT string_agg(name || '=' || CASE WHEN unit = '8kB' THEN pg_size_pretty(setting::bigint * 8192)
		WHEN unit = 'kB' THEN pg_size_pretty(setting::bigint * 1024) WHEN unit = 'MB' THEN pg_size_pretty(setting::bigint * 1048576)
		WHEN unit IS NOT NULL THEN setting || unit ELSE setting END, ' ' ORDER BY array_position(string_to_array('$1', ' '), name))
	FROM pg_settings WHERE name = ANY (string_to_array('$1', ' '))
EOF
}
