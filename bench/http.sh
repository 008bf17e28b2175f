#!/usr/bin/env bash
# bench/http.sh - pgbatch background executors and HTTP stages: prints figures,
# asserts nothing about speed.
#
#   bash bench/http.sh         (Debian 12, as root; about 5-6 minutes)
#
# What it measures, on a throwaway PostgreSQL 15 cluster with pgbatch in
# shared_preload_libraries and durable commits (fsync and synchronous_commit
# on), the items always run by the background executors alone (no batch.run()):
#   1. HTTP completions/s through one HTTP stage against a local nginx
#      ($PGB_HTTP_ITEMS items), next to the loopback ceiling measured with wrk
#      against the same nginx and to curl's own multi transfer (curl
#      --parallel --parallel-max 64, the same libcurl, the same POSTs), and
#      to pgsql-http with keep-alive in 4 sessions (not in Debian's archive:
#      estimated from its ratio to curl in ../shared/ANCHORS.md's run);
#      pgbatch.workers 1 and 2 by claim_batch_size 100 and 500; then curl
#      and pgbatch one after the other in a few rounds, with the median
#      ratio (one pair moves by a tenth from run to run here); then the
#      same over HTTPS + HTTP/2 (nginx's TLS server, a CA made here with
#      openssl, proxying to the plain one), with the connections the
#      executors used;
#   2. the same against a server that answers after 100 ms (test/fake_api.py
#      --latency-ms), as a share of the ideal in_flight / latency;
#   3. a 3-stage no-op SQL pipeline: stage executions/s;
#   4. executor memory (VmRSS, RssAnon, palloc'd) from fresh start through
#      1,000,000 HTTP requests;
#   5. where the executors spend their time (pg_stat_statements);
#   6. pacing against a provider's limit of 20 requests a second: nginx's
#      limit_req (rate=20r/s burst=5, 429 beyond) with rate_limit 1200, and
#      the fake API's OpenAI-style limit of 20 per second window, announced
#      in its x-ratelimit-* headers, with no rate_limit set: wall time next
#      to the ideal, and the 429s;
#   7. many in flight, as LLM calls are: 1,000 and 5,000 requests in flight
#      (2 executors, max_http_in_flight and max_concurrency to match)
#      against nginx answering every request after 1 s (the echo module's
#      echo_sleep), as a share of the ideal in_flight / 1 s, with the
#      executors' peak RSS and its growth per request in flight; then where
#      the time went, from batch.attempts: the ramp (first request to the
#      in-flight-th), the mean in flight, the mean request time, and the
#      rate held while all slots were busy.
#
# How: installs the dependencies (test/lib.sh, plus nginx-light, wrk, curl and
# python3), builds and installs the extension (output in the work dir's
# setup.log), starts a cluster owned by postgres in a mktemp dir on
# 127.0.0.1:$PGB_HTTP_PORT (default 54340), nginx (a foreground child with its
# own config, one worker, on 127.0.0.1:$PGB_HTTP_NGINX_PORT, default 18090)
# and the fake API (127.0.0.1, a free port); each is stopped on exit by its
# own pid (the cluster through pg_ctl).  Every batch is submitted with the
# executors already running, and timed from just after the submit's commit
# until batch.progress shows it finished (read every 100 ms; every result is
# then durably recorded).  A warm-up batch runs first (not reported), so that
# the executors plan their statements on a filled batch.items (plans made
# while it is near empty can stay slow until it is next analyzed).  Before
# every measured batch but those of section 4, the batch tables are VACUUM
# ANALYZEd and a CHECKPOINT is taken.
# Knobs (environment): PGB_HTTP_ITEMS (100000), PGB_HTTP_SLOW_ITEMS (25000),
# PGB_HTTP_SLOW_MS (100), PGB_HTTP_SLOW_CONCURRENCY (128), PGB_HTTP_RSS_CHUNK
# (100000) and PGB_HTTP_RSS_CHUNKS (10), PGB_HTTP_WARMUP (20000),
# PGB_HTTP_WRK_SECONDS (10), PGB_HTTP_WAIT (180: seconds to wait for one
# batch), PGB_HTTP_CONFIGS (the section 1 grid, "workers:claim ..."),
# PGB_HTTP_PACED_ITEMS (500), PGB_HTTP_FLIGHTS (section 7's in-flight counts,
# "1000 5000"), PGB_HTTP_FLIGHT_SECONDS (30: items = in flight x this),
# PGB_HTTP_FLIGHT_CLAIM (section 7's claim_batch_size, 100),
# PGB_HTTP_PAIRS (3: section 1's alternating rounds of curl and pgbatch),
# PGB_HTTP_SECTIONS (which sections to run: "1 2 3 4 5 6 7"), PGB_HTTP_SETTINGS
# (more server settings, "name=value ...", e.g. to load auto_explain),
# PGB_BENCH_STATEMENT_TIMEOUT (300s), PGB_BENCH_MEM_LIMIT_GB (8), PGB_KEEP=1 to
# keep the work dir.
set -euo pipefail
. "$(dirname "$0")/../test/lib.sh"
. "$(dirname "$0")/lib.sh"

bench_dir="$PGB_TOP/bench"
port=${PGB_HTTP_PORT:-54340}
nginx_port=${PGB_HTTP_NGINX_PORT:-18090}
nginx_tls_port=${PGB_HTTP_NGINX_TLS_PORT:-18091}
items=${PGB_HTTP_ITEMS:-100000}
slow_items=${PGB_HTTP_SLOW_ITEMS:-25000}
slow_ms=${PGB_HTTP_SLOW_MS:-100}
slow_conc=${PGB_HTTP_SLOW_CONCURRENCY:-128}
rss_chunk=${PGB_HTTP_RSS_CHUNK:-100000}
rss_chunks=${PGB_HTTP_RSS_CHUNKS:-10}
wrk_s=${PGB_HTTP_WRK_SECONDS:-10}
wait_s=${PGB_HTTP_WAIT:-180}
configs=${PGB_HTTP_CONFIGS:-"2:100 1:100 2:500 1:500"}
warmup=${PGB_HTTP_WARMUP:-20000}
sections=${PGB_HTTP_SECTIONS:-"1 2 3 4 5 6 7"}
flights=${PGB_HTTP_FLIGHTS:-"1000 5000"}
flight_s=${PGB_HTTP_FLIGHT_SECONDS:-30}
flight_claim=${PGB_HTTP_FLIGHT_CLAIM:-100}
pairs=${PGB_HTTP_PAIRS:-3}
nginx_sleep_port=${PGB_HTTP_NGINX_SLEEP_PORT:-18093}
paced_items=${PGB_HTTP_PACED_ITEMS:-500}
nginx_limit_port=${PGB_HTTP_NGINX_LIMIT_PORT:-18092}
mem_limit_gb=${PGB_BENCH_MEM_LIMIT_GB:-8}
diag_items=$((items / 2))
nginx_conc=256 # above workers x max_http_in_flight: nginx's endpoint never limits
in_flight_per_worker=64
export PGOPTIONS="-c statement_timeout=${PGB_BENCH_STATEMENT_TIMEOUT:-300s}"

# Cluster settings for a 2-core / 24 GB machine.  Commits stay durable.  The
# pgbatch.* and pg_stat_statements.track settings are set with ALTER SYSTEM (a
# command-line setting could not be changed by a reload).
# shellcheck disable=SC2054
settings=(
	"${PGB_BENCH_SETTINGS[@]}"
	shared_preload_libraries=pgbatch,pg_stat_statements
)
# more, for diagnosis (e.g. auto_explain): PGB_HTTP_SETTINGS="name=value ..."
# shellcheck disable=SC2206
settings+=(${PGB_HTTP_SETTINGS:-})
shown=(shared_buffers effective_cache_size work_mem wal_buffers max_wal_size
	checkpoint_timeout fsync synchronous_commit full_page_writes wal_level autovacuum
	jit statement_timeout pgbatch.workers pgbatch.max_http_in_flight
	pgbatch.claim_batch_size pgbatch.poll_interval pgbatch.lease_duration)
shown_settings="${shown[*]}"

started=$(date +%s)
work=$(mktemp -d /tmp/pgbatch-http-bench.XXXXXX)
chown postgres: "$work"
cluster="$work/cluster"
nginx_pid=
api_pid=
sampler=

cleanup() {
	local status=$?
	stop_pid "$sampler"
	pgb_cluster_stop "$cluster"
	stop_pid "$nginx_pid"
	stop_pid "$api_pid"
	if [ "${PGB_KEEP:-}" = "" ]; then rm -rf "$work"; else echo "kept $work"; fi
	exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! { pgb_install_deps && pgb_apt_install nginx-light libnginx-mod-http-echo wrk curl python3 openssl && pgb_build_install; } >"$work/setup.log" 2>&1; then
	echo "setup failed; the end of $work/setup.log:" >&2
	tail -n 40 "$work/setup.log" >&2
	exit 1
fi

port_free() { ! ss -Htln "sport = :$1" 2>/dev/null | grep -q .; }
for p in "$port" "$nginx_port" "$nginx_tls_port" "$nginx_limit_port" "$nginx_sleep_port"; do
	if ! port_free "$p"; then
		echo "port $p on this machine is taken; set PGB_HTTP_PORT / PGB_HTTP_NGINX_PORT" >&2
		exit 1
	fi
done

# ---------------------------------------------------------------- servers
mkdir -p "$work/nginx" "$work/tls"
# a CA and a certificate for 127.0.0.1 that it signed, for the HTTPS row
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj '/CN=pgbatch bench CA' \
	-keyout "$work/tls/ca.key" -out "$work/tls/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj '/CN=127.0.0.1' -keyout "$work/tls/server.key" \
	-out "$work/tls/server.csr" 2>/dev/null
printf 'subjectAltName = IP:127.0.0.1\n' >"$work/tls/server.ext"
openssl x509 -req -in "$work/tls/server.csr" -CA "$work/tls/ca.crt" -CAkey "$work/tls/ca.key" \
	-CAcreateserial -days 2 -extfile "$work/tls/server.ext" -out "$work/tls/server.crt" 2>/dev/null
# the other servers: an LLM-like API, HTTPS + HTTP/2, a provider's limit
nginx_servers=$(
	cat <<EOF
	# HTTPS + HTTP/2, each request read whole and answered by the server
	# above (as an API behind a load balancer); the log keeps the connection
	upstream plain { server 127.0.0.1:$nginx_port; keepalive 64; }
	log_format conn '\$connection';
	server {
		listen 127.0.0.1:$nginx_tls_port ssl http2;
		ssl_certificate $work/tls/server.crt;
		ssl_certificate_key $work/tls/server.key;
		http2_max_requests 100000000;
		access_log $work/nginx/tls_access.log conn;
		location / {
			proxy_pass http://plain;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
		}
	}
	# an LLM-like API: every answer after 1 s (a timer, no CPU while it waits)
	server {
		listen 127.0.0.1:$nginx_sleep_port backlog=8192;
		location / {
			default_type application/json;
			echo_read_request_body;
			echo_sleep 1.0;
			echo '{"ok":true}';
		}
	}
	# a provider's limit: 20 requests a second, a burst of 5, 429 beyond; the
	# answers come from the server above (limit_req runs before them)
	limit_req_zone \$server_port zone=api:1m rate=20r/s;
	log_format status '\$status';
	server {
		listen 127.0.0.1:$nginx_limit_port;
		limit_req zone=api burst=5 nodelay;
		limit_req_status 429;
		access_log $work/nginx/limit_access.log status;
		location / {
			proxy_pass http://plain;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
		}
	}
EOF
)
bench_nginx_conf "$work/nginx" "$nginx_port" \
	"load_module /usr/lib/nginx/modules/ngx_http_echo_module.so;" "$nginx_servers"
nginx -e "$work/nginx/error.log" -p "$work/nginx/" -c "$work/nginx/nginx.conf" \
	>"$work/nginx/stdout" 2>&1 &
nginx_pid=$!
python3 "$PGB_TOP/test/fake_api.py" --port 0 --portfile "$work/api.port" \
	--pidfile "$work/api.pid" --latency-ms "$slow_ms" >"$work/api.out" 2>&1 &
api_pid=$!
for _ in $(seq 1 100); do
	[ -s "$work/api.port" ] && curl -s -m 1 -o /dev/null "http://127.0.0.1:$nginx_port/" && break
	sleep 0.1
done
if [ "$(curl -s -m 2 -X POST -d '{}' "http://127.0.0.1:$nginx_port/x")" != '{"ok":true}' ]; then
	echo "nginx did not start:" >&2
	cat "$work/nginx/stdout" "$work/nginx/error.log" >&2
	exit 1
fi
if [ ! -s "$work/api.port" ]; then
	echo "the fake API did not start:" >&2
	cat "$work/api.out" >&2
	exit 1
fi
api_port=$(cat "$work/api.port")
nginx_url="http://127.0.0.1:$nginx_port"
api_url="http://127.0.0.1:$api_port"

# the limit is inherited by the postmaster and so by every backend
( ulimit -v $((mem_limit_gb * 1024 * 1024)); pgb_cluster_start "$cluster" "$port" "${settings[@]}" )

# psql, unaligned, '|'-separated, no headers
q() { pgb_psql "$cluster" "$port" -d postgres -qAt -F'|' "$@" </dev/null; }
# a script from bench/ with variables; stderr kept for error reports
qf() {
	local f=$1
	shift
	q -f "$bench_dir/$f" "$@" 2>"$work/last.err"
}
last_error() { grep -m1 -E 'ERROR|FATAL|error' "$work/last.err" | sed 's/^.*\(ERROR\|FATAL\): *//' | cut -c1-70; }
# 1234567 -> 1,234,567
num() { printf '%.0f' "$1" | sed -e ':a' -e 's/\([0-9]\)\([0-9]\{3\}\)\($\|,\)/\1,\2\3/' -e 'ta'; }
rate() { awk -v n="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.0f", n / s; else print 0 }'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.0f", 100 * a / b; else print 0 }'; }
rule() { printf '%s\n' "--------------------------------------------------------------------------------------------"; }

# pgbatch settings: set_gucs NAME VALUE [NAME VALUE ...], then a reload
set_gucs() {
	local args=()
	while [ $# -ge 2 ]; do
		args+=(-c "ALTER SYSTEM SET $1 = '$2'")
		shift 2
	done
	q "${args[@]}" -c "SELECT pg_reload_conf()" >/dev/null
	sleep 0.5 # the executors take a reload when their latch wakes them: at once
}
exec_pids() {
	q -c "SELECT coalesce(string_agg(pid::text, ' ' ORDER BY pid), '') FROM pg_stat_activity
		  WHERE backend_type = 'pgbatch executor'"
}
# waits until N executors run (the launcher starts and stops them on reload)
wait_executors() {
	local n=$1
	for _ in $(seq 1 100); do
		if [ "$(q -c "SELECT count(*) FROM batch.workers")" = "$n" ] &&
			[ "$(q -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pgbatch executor'")" = "$n" ]; then
			sleep 0.5
			return 0
		fi
		sleep 0.2
	done
	echo "   !! $n executors were not running after 20 s" >&2
	return 1
}
clk_tck=$(getconf CLK_TCK)
# CPU time (clock ticks, user + system) of the given pids
cpu_ticks() {
	local p t=0 v
	for p in "$@"; do
		v=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$p/stat" 2>/dev/null || echo 0)
		t=$((t + v))
	done
	echo "$t"
}
nginx_workers() { cat "/proc/$nginx_pid/task/$nginx_pid/children" 2>/dev/null || true; }
# commits and WAL of the cluster so far
db_stats() {
	q -c "SELECT d.xact_commit, w.wal_bytes::bigint, w.wal_sync FROM pg_stat_database d, pg_stat_wal w
		  WHERE d.datname = current_database()"
}
# VmRSS, RssAnon and RssShmem of a pid, MB
rss_of() {
	awk '/^VmRSS/ { r = $2 } /^RssAnon/ { a = $2 } /^RssShmem/ { s = $2 }
		 END { printf "%.1f %.1f %.1f", r / 1024, a / 1024, s / 1024 }' "/proc/$1/status" 2>/dev/null ||
		echo "- - -"
}
# the palloc'd memory of a server process: the "Grand total" that
# pg_log_backend_memory_contexts() writes to the server log, in kB
palloc_kb() {
	local pid=$1 before line=
	before=$(wc -l <"$cluster/server.log")
	q -c "SELECT pg_log_backend_memory_contexts($pid)" >/dev/null
	for _ in $(seq 1 25); do
		line=$(tail -n +"$((before + 1))" "$cluster/server.log" | grep -a "\[$pid\].*Grand total:" | tail -1 || true)
		[ -n "$line" ] && break
		sleep 0.2
	done
	if [ -n "$line" ]; then
		sed -n 's/.*Grand total: \([0-9]*\) bytes.*/\1/p' <<<"$line" | awk '{ printf "%.0f", $1 / 1024 }'
	else
		echo "?"
	fi
}
# before a section: settled statistics and no checkpoint debt
settle() {
	q -c "VACUUM ANALYZE batch.items" -c "VACUUM ANALYZE batch.queue" -c "VACUUM ANALYZE batch.attempts" \
		-c "VACUUM ANALYZE batch.outputs" -c "CHECKPOINT" >/dev/null
}

# One batch run by the executors: run_batch PIPELINE N NAME.  Sets R_* for the
# caller: batch figures (see bench/http_batch.sql), executor and nginx CPU
# seconds, commits, WAL bytes, and R_ERR when it failed.
run_batch() {
	local pipeline=$1 n=$2 name=$3 pids c0 n0 s0 c1 n1 s1 res ngx
	R_ERR='' R_WALL='' R_DONE=0 R_ATT=0 R_SPAN=0 R_SUBMIT=0 R_PIDS_BEFORE='' R_PIDS_AFTER=''
	pids=$(exec_pids)
	ngx=$(nginx_workers)
	# shellcheck disable=SC2086
	c0=$(cpu_ticks $pids)
	# shellcheck disable=SC2086
	n0=$(cpu_ticks $ngx)
	s0=$(db_stats)
	if ! res=$(qf http_batch.sql -v pipeline="$pipeline" -v n="$n" -v name="$name" -v timeout="$wait_s"); then
		R_ERR="failed: $(last_error)"
		return 1
	fi
	sleep 1.2 # the executors report their statistics at most once a second
	# shellcheck disable=SC2086
	c1=$(cpu_ticks $pids)
	# shellcheck disable=SC2086
	n1=$(cpu_ticks $ngx)
	s1=$(db_stats)
	IFS='|' read -r R_BID R_SUBMIT R_WALL R_STATUS R_DONE R_FAILED _ R_SPAN _ R_ATT R_OK <<<"$res"
	R_EXEC_CPU=$(awk -v a="$c0" -v b="$c1" -v t="$clk_tck" 'BEGIN { printf "%.2f", (b - a) / t }')
	R_NGINX_CPU=$(awk -v a="$n0" -v b="$n1" -v t="$clk_tck" 'BEGIN { printf "%.2f", (b - a) / t }')
	R_COMMITS=$(($(cut -d'|' -f1 <<<"$s1") - $(cut -d'|' -f1 <<<"$s0")))
	R_WAL=$(($(cut -d'|' -f2 <<<"$s1") - $(cut -d'|' -f2 <<<"$s0")))
	R_SYNCS=$(($(cut -d'|' -f3 <<<"$s1") - $(cut -d'|' -f3 <<<"$s0")))
	R_PIDS_AFTER=$(exec_pids)
	R_PIDS_BEFORE=$pids
	if [ "$R_STATUS" != completed ] || [ "$R_DONE" != "$n" ]; then
		R_ERR="status $R_STATUS after $R_WALL s: $R_DONE of $n completed, $R_FAILED failed"
		q -c "SELECT batch.cancel($R_BID)" >/dev/null 2>&1 || true
	elif [ "$R_OK" != "$R_ATT" ]; then
		R_ERR="$((R_ATT - R_OK)) of $R_ATT attempts did not succeed (retried)"
	fi
	return 0
}
# the standard row: pgbatch settings, then the figures of the last run_batch
row_header() {
	printf '   %-7s %5s %8s %7s %8s %8s %8s %8s %6s %6s %6s %6s\n' \
		"workers" "claim" "submit" "wall" "items/s" "stages/s" "steady" "commits" "WAL" "fsync" "exec" "nginx"
	printf '   %-7s %5s %8s %7s %8s %8s %8s %8s %6s %6s %6s %6s\n' \
		"" "chunk" "items/s" "s" "" "" "items/s" "/s" "B/item" "/s" "%cpu" "%cpu"
}
row() {
	local w=$1 c=$2 n=$3
	if [ -n "$R_ERR" ] && [ -z "${R_WALL:-}" ]; then
		printf '   %-7s %5s  %s\n' "$w" "$c" "$R_ERR"
		return
	fi
	printf '   %-7s %5s %8s %7.2f %8s %8s %8s %8s %6s %6s %6s %6s\n' "$w" "$c" \
		"$(num "$(rate "$n" "$R_SUBMIT")")" "$R_WALL" "$(num "$(rate "$R_DONE" "$R_WALL")")" \
		"$(num "$(rate "$R_ATT" "$R_WALL")")" "$(num "$(rate "$R_DONE" "$R_SPAN")")" \
		"$(num "$(rate "$R_COMMITS" "$R_WALL")")" "$(num "$(rate "$R_WAL" "$R_DONE")")" \
		"$(num "$(rate "$R_SYNCS" "$R_WALL")")" "$(pct "$R_EXEC_CPU" "$R_WALL")" "$(pct "$R_NGINX_CPU" "$R_WALL")"
	[ -z "$R_ERR" ] || printf '   %-13s !! %s\n' "" "$R_ERR"
	[ "$R_PIDS_BEFORE" = "$R_PIDS_AFTER" ] ||
		printf '   %-13s !! executors changed during the run: pids %s, then %s\n' "" "$R_PIDS_BEFORE" "$R_PIDS_AFTER"
}

q -c "SELECT 1" >/dev/null
set_gucs pgbatch.workers 2 pgbatch.max_http_in_flight "$in_flight_per_worker" pgbatch.claim_batch_size 100 \
	pg_stat_statements.track none
qf http_setup.sql -v nginx_url="$nginx_url" -v nginx_conc="$nginx_conc" -v slow_url="$api_url" \
	-v tls_url="https://127.0.0.1:$nginx_tls_port" -v ca="$(cat "$work/tls/ca.crt")" \
	-v limit_url="http://127.0.0.1:$nginx_limit_port" -v paced_items="$paced_items" \
	-v slow_conc="$slow_conc" -v items="$items" -v slow_items="$slow_items" -v rss_chunk="$rss_chunk" \
	-v warmup="$warmup" -v diag="$diag_items" -v sleep_url="http://127.0.0.1:$nginx_sleep_port" \
	-v flight_items="$(for f in $flights; do printf '%s,' $((f * flight_s)); done | sed 's/,$//')" >/dev/null || {
	echo "bench/http_setup.sql failed: $(cat "$work/last.err")" >&2
	exit 1
}
wait_executors 2

# ---------------------------------------------------------------- environment
echo "pgbatch executors and HTTP stages benchmark          $(date -u '+%Y-%m-%d %H:%M UTC')"
rule
code=$(git -C "$PGB_TOP" rev-parse --short HEAD 2>/dev/null || echo "not a git checkout")
dirty=$(git -C "$PGB_TOP" status --porcelain 2>/dev/null | grep -c . || true)
[ "$dirty" != 0 ] && code="$code, plus $dirty changed or new files in the working tree"
printf '%-13s %s\n' "code" "$code"
printf '%-13s %s CPUs (%s), %s GB RAM, Linux %s\n' "machine" "$(nproc)" \
	"$(lscpu | sed -n 's/^Model name: *//p' | head -1)" \
	"$(awk '/MemTotal/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)" "$(uname -r)"
printf '%-13s %s\n' "load average" "$(cut -d' ' -f1-3 /proc/loadavg) at start (anything else running skews the figures)"
if awk '{ exit !($1 > 1) }' /proc/loadavg; then
	printf '%-13s %s\n' "" "!! other processes are busy on this machine: expect lower and noisier figures"
fi
printf '%-13s %s\n' "data dir" "$(df -T "$cluster" | awk 'NR == 2 { print $2 " on " $1 }'), $cluster"
printf '%-13s %s\n' "server" "$(q -c "SELECT 'PostgreSQL ' || current_setting('server_version')")"
line=$(q -c "$(bench_settings_sql "$shown_settings")")
printf '%-13s %s\n' "settings" "$(echo "$line" | fold -s -w 78 | sed '2,$s/^/              /')"
printf '%-13s %s\n' "" "shared_preload_libraries=pgbatch,pg_stat_statements (track=none except in section 5);"
printf '%-13s %s\n' "" "server processes limited to ${mem_limit_gb} GB address space"
printf '%-13s %s\n' "nginx" "$(nginx -v 2>&1 | sed 's/^nginx version: //'), 1 worker, $nginx_url, endpoint max_concurrency $nginx_conc"
printf '%-13s %s\n' "fake API" "test/fake_api.py --latency-ms $slow_ms (Python $(python3 -c 'import platform; print(platform.python_version())')), $api_url"
echo
echo "   Every batch: submitted with the executors running; 'wall' = submit commit -> batch.progress"
echo "   seen finished (read every 100 ms), so every result is durably recorded; items/s and"
echo "   stages/s over that wall time; 'steady' = items over first-to-last batch.items.finished_at;"
echo "   commits/s, WAL and fsyncs from pg_stat_database and pg_stat_wal (whole cluster); exec %cpu"
echo "   = CPU time of all executors over the wall time (100 = one core; the machine has $(nproc))."

# ---------------------------------------------------------------- 1. nginx
# curl's own multi transfer of $items POSTs ($work/curl.cfg): sets curl_rps
# (empty when curl failed)
curl_run() {
	local t0 ok=1
	t0=$(date +%s.%N)
	curl -s --parallel --parallel-max 64 -K "$work/curl.cfg" -X POST -H 'Content-Type: application/json' \
		-d '{"outputs": {}, "payload": {"n": 12345}}' >/dev/null 2>&1 || ok=0
	curl_rps=$(awk -v n="$items" -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", n / (b - a) }')
	[ "$ok" = 1 ] || curl_rps=
	[ -n "$curl_rps" ]
}
# pgbatch (workers 2, claim 100) and curl, one after the other, $pairs times:
# on a small virtual machine either moves by a tenth or more from one run to
# the next, so one pair says little; the median ratio of several says more.
pairs_vs_curl() {
	local k r ratios=() med
	echo
	printf '   side by side, alternating, %s rounds of %s: curl --parallel, then pgbatch (workers 2, claim 100)\n' \
		"$pairs" "$(num "$items")"
	printf '   %-7s %10s %10s %7s\n' "round" "curl" "pgbatch" "ratio"
	for k in $(seq 1 "$pairs"); do
		curl_run || { printf '   %-7s curl failed\n' "$k"; continue; }
		settle
		run_batch http_nginx "$items" "pair_$k" || true
		if [ -n "$R_ERR" ]; then
			printf '   %-7s %10s pgbatch: %s\n' "$k" "$(num "$curl_rps")" "$R_ERR"
			continue
		fi
		r=$(rate "$R_DONE" "$R_WALL")
		ratios+=("$(awk -v a="$r" -v b="$curl_rps" 'BEGIN { printf "%.2f", a / b }')")
		printf '   %-7s %10s %10s %6sx\n' "$k" "$(num "$curl_rps")" "$(num "$r")" "${ratios[-1]}"
	done
	[ "${#ratios[@]}" -gt 0 ] || return 0
	med=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }')
	printf '   pgbatch against curl --parallel, median of %s rounds: %sx (target: >= 1.0x)\n' "${#ratios[@]}" "$med"
	# pgsql-http is not in Debian's archive: ../shared/ANCHORS.md measured it
	# in one run next to curl (keep-alive, 4 sessions 11,171/s; curl 14,451/s)
	printf '   against pgsql-http, 4 sessions, keep-alive (estimated as 0.773 x curl): %sx (target: >= 1.3x)\n' \
		"$(awk -v m="$med" 'BEGIN { printf "%.2f", m * 14451 / 11171 }')"
}
section_1() {
	echo
	echo "1. HTTP stage against nginx: $(num "$items") items, one POST each, {\"ok\":true} back"
	echo
	cat >"$work/post.lua" <<-'EOF'
	-- wrk: the request an executor sends, near enough
	wrk.method = "POST"
	wrk.body = '{"outputs": {}, "payload": {"n": 12345}}'
	wrk.headers["Content-Type"] = "application/json"
	wrk.headers["Accept"] = "application/json"
	wrk.headers["Idempotency-Key"] = "pgbatch-7300000000000000000-5-123456-1"
	EOF
	wrk_out=$(wrk -t2 -c64 -d"${wrk_s}s" -s "$work/post.lua" "$nginx_url/x" 2>&1 || true)
	wrk_rps=$(sed -n 's/^Requests\/sec: *//p' <<<"$wrk_out")
	wrk_lat=$(awk '$1 == "Latency" { print $2 }' <<<"$wrk_out")
	if [ -n "$wrk_rps" ]; then
		printf '   loopback ceiling: wrk -t2 -c64 -d%ss (same POST) against the same nginx: %s req/s, mean latency %s\n\n' \
			"$wrk_s" "$(num "$wrk_rps")" "$wrk_lat"
	else
		printf '   loopback ceiling: wrk failed: %s\n\n' "$(tail -1 <<<"$wrk_out")"
	fi

	# curl's own multi transfer, same libcurl: one process, 64 transfers at once
	awk -v n="$items" -v u="$nginx_url/x" 'BEGIN { for (i = 1; i <= n; i++) printf "url = \"%s?n=%d\"\noutput = \"/dev/null\"\n", u, i }' \
		>"$work/curl.cfg"
	if curl_run; then
		printf '   curl --parallel --parallel-max 64 (libcurl %s), %s POSTs against the same nginx: %s req/s\n\n' \
			"$(curl -V | head -1 | awk '{ print $2 }')" "$(num "$items")" "$(num "$curl_rps")"
	else
		printf '   curl --parallel failed\n\n'
	fi

	row_header
	best_rate=0
	best_cfg=
	default_rate=0
	n_case=0
	for cfg in $configs; do
		w=${cfg%%:*}
		c=${cfg##*:}
		n_case=$((n_case + 1))
		set_gucs pgbatch.workers "$w" pgbatch.claim_batch_size "$c"
		wait_executors "$w" || continue
		settle
		run_batch http_nginx "$items" "nginx_$n_case" || true
		row "$w" "$c" "$items"
		if [ -z "$R_ERR" ]; then
			r=$(rate "$R_DONE" "$R_WALL")
			[ "$r" -gt "$best_rate" ] && best_rate=$r && best_cfg="workers $w, claim_batch_size $c"
			[ "$w:$c" = "2:100" ] && default_rate=$r
		fi
	done
	set_gucs pgbatch.workers 2 pgbatch.claim_batch_size 100
	wait_executors 2
	echo
	printf '   default (workers 2, claim 100): %s completions/s; best: %s completions/s (%s)\n' \
		"$(num "$default_rate")" "$(num "$best_rate")" "${best_cfg:-none}"
	[ -n "$wrk_rps" ] && printf '   best as a share of the loopback ceiling: %s%%\n' "$(pct "$best_rate" "$wrk_rps")"
	pairs_vs_curl
	echo "   target: >= 10,000 HTTP stage completions/s, every result durably recorded"
	echo
	echo "   the same over HTTPS + HTTP/2 (nginx TLS, proxying to the server above), workers 2, claim 100:"
	: >"$work/nginx/tls_access.log"
	row_header
	run_batch http_nginx_tls "$items" nginx_tls || true
	row 2 100 "$items"
	printf '   %s completions/s on %s connections (nginx: %s requests)\n' \
		"$(num "$(rate "$R_DONE" "$R_WALL")")" \
		"$(sort -u "$work/nginx/tls_access.log" | grep -c .)" \
		"$(num "$(grep -c . "$work/nginx/tls_access.log")")"
}

# ---------------------------------------------------------------- 2. slow server
section_2() {
	ideal_in_flight=$((2 * in_flight_per_worker))
	[ "$slow_conc" -lt "$ideal_in_flight" ] && ideal_in_flight=$slow_conc
	ideal=$(awk -v f="$ideal_in_flight" -v ms="$slow_ms" 'BEGIN { printf "%.0f", f * 1000 / ms }')
	echo
	echo "2. HTTP stage against a server that answers after $slow_ms ms (test/fake_api.py): $(num "$slow_items") items,"
	echo "   workers 2, max_http_in_flight $in_flight_per_worker, endpoint max_concurrency $slow_conc: in_flight ="
	echo "   min($slow_conc, 2 x $in_flight_per_worker) = $ideal_in_flight, ideal $ideal_in_flight / ${slow_ms} ms = $(num "$ideal") req/s"
	echo
	settle
	curl -s -m 5 -o /dev/null "$api_url/_control/reset" || true
	run_batch http_slow "$slow_items" slow || true
	api_stats=$(curl -s -m 5 "$api_url/_stats?keys=0" |
		python3 -c 'import json, sys; d = json.load(sys.stdin); print(d["total"], d["max_in_flight"], d["connections_opened"])' 2>/dev/null || echo "? ? ?")
	read -r api_total api_max api_conns <<<"$api_stats"
	if [ -z "$R_ERR" ] || [ -n "${R_WALL:-}" ]; then
		achieved=$(rate "$R_DONE" "$R_WALL")
		printf '   %-44s %s req/s (%s items in %.2f s)\n' "achieved (submit commit to finished)" "$(num "$achieved")" "$(num "$R_DONE")" "$R_WALL"
		printf '   %-44s %s req/s\n' "steady (first to last finished_at)" "$(num "$(rate "$R_DONE" "$R_SPAN")")"
		printf '   %-44s %s%%   (target >= 80%%)\n' "achieved / ideal" "$(pct "$achieved" "$ideal")"
		printf '   %-44s %s requests, at most %s in flight at once, %s connections\n' "the fake API saw" "$api_total" "$api_max" "$api_conns"
		printf '   %-44s %s%% of a core, %s commits/s\n' "executors" "$(pct "$R_EXEC_CPU" "$R_WALL")" "$(num "$(rate "$R_COMMITS" "$R_WALL")")"
		[ -z "$R_ERR" ] || printf '   !! %s\n' "$R_ERR"
	else
		printf '   %s\n' "$R_ERR"
	fi
}

# ---------------------------------------------------------------- 3. SQL stages
section_3() {
	echo
	echo "3. SQL pipeline, 3 no-op stages, $(num "$items") items, drained by the executors alone"
	echo
	row_header
	for cfg in 2:100 2:500; do
		w=${cfg%%:*}
		c=${cfg##*:}
		set_gucs pgbatch.workers "$w" pgbatch.claim_batch_size "$c"
		wait_executors "$w" || continue
		settle
		run_batch sql_3 "$items" "sql3_$c" || true
		row "$w" "$c" "$items"
	done
	set_gucs pgbatch.workers 2 pgbatch.claim_batch_size 100
	echo "   target: >= 25,000 stage executions/s"
}

# ---------------------------------------------------------------- 4. memory
section_4() {
	total_rss=$((rss_chunk * rss_chunks))
	echo
	echo "4. Executor memory through $(num "$total_rss") HTTP requests (nginx): fresh executors (workers 0, then"
	echo "   2), then $rss_chunks batches of $(num "$rss_chunk") items, each submitted when the one before has finished."
	echo "   MB from /proc/<pid>/status: VmRSS (all resident), RssAnon (private: heap, libcurl),"
	echo "   RssShmem (shared buffers touched so far; grows until all are touched, not a leak);"
	echo "   palloc = pg_log_backend_memory_contexts() grand total, kB"
	echo
	set_gucs pgbatch.workers 0
	wait_executors 0
	set_gucs pgbatch.workers 2 pgbatch.claim_batch_size 100
	wait_executors 2
	settle
	rss_pids=$(exec_pids)
	mem_line() {
		local label=$1 extra=$2 p out=""
		for p in $rss_pids; do
			read -r vm anon shm <<<"$(rss_of "$p")"
			out="$out$(printf '%7s %7s %7s %7s  ' "$vm" "$anon" "$shm" "$(palloc_kb "$p")")"
		done
		printf '   %-10s %9s  %s\n' "$label" "$extra" "$out"
	}
	hdr=""
	hdr2=""
	for p in $rss_pids; do
		hdr="$hdr$(printf '%-32s  ' "executor pid $p")"
		hdr2="$hdr2$(printf '%7s %7s %7s %7s  ' "VmRSS" "RssAnon" "RssShm" "palloc")"
	done
	printf '   %-10s %9s  %s\n' "requests" "items/s" "$hdr"
	printf '   %-10s %9s  %s\n' "" "" "$hdr2"
	mem_line 0 "(start)"
	done_reqs=0
	t_rss=$(date +%s.%N)
	for k in $(seq 1 "$rss_chunks"); do
		run_batch http_nginx "$rss_chunk" "rss_$k" || true
		if [ -n "$R_ERR" ]; then
			printf '   %-10s !! %s\n' "batch $k" "$R_ERR"
			[ -n "${R_WALL:-}" ] || break
		fi
		done_reqs=$((done_reqs + R_DONE))
		if [ "$k" = 1 ] || [ "$k" = "$rss_chunks" ] || [ $((k % 2)) = 0 ]; then
			mem_line "$(num "$done_reqs")" "$(num "$(rate "$R_DONE" "$R_WALL")")"
		fi
		[ "$R_PIDS_BEFORE" = "$R_PIDS_AFTER" ] || printf '   !! executors changed: %s, then %s\n' "$R_PIDS_BEFORE" "$R_PIDS_AFTER"
	done
	t_rss_end=$(date +%s.%N)
	printf '   %s requests in %.0f s (submits, waits and the memory reads included); target: flat RSS\n' \
		"$(num "$done_reqs")" "$(awk -v a="$t_rss" -v b="$t_rss_end" 'BEGIN { print b - a }')"
}

# ---------------------------------------------------------------- 5. statements
section_5() {
	echo
	echo "5. Where the executors spend their time: HTTP stage against nginx, $(num "$diag_items") items, workers 2,"
	echo "   claim 100; pg_stat_statements (track=top: every executor statement is top level)"
	echo
	settle
	set_gucs pg_stat_statements.track top
	q -c "SELECT pg_stat_statements_reset()" >/dev/null
	run_batch http_nginx "$diag_items" diag || true
	set_gucs pg_stat_statements.track none
	if [ -n "${R_WALL:-}" ]; then
		printf '   run: %.2f s, %s items/s; executors busy %s%% of a core; %s commits\n\n' "$R_WALL" \
			"$(num "$(rate "$R_DONE" "$R_WALL")")" "$(pct "$R_EXEC_CPU" "$R_WALL")" "$(num "$R_COMMITS")"
		printf '   %8s %9s %9s %9s %6s  %s\n' "calls" "total ms" "mean ms" "rows" "%wall" "statement"
		q -c "SELECT calls, round(total_exec_time::numeric, 0), round(mean_exec_time::numeric, 3), rows,
					 round((100 * total_exec_time / ($R_WALL * 1000 * 2))::numeric, 0),
					 left(regexp_replace(query, '\s+', ' ', 'g'), 110)
			  FROM pg_stat_statements
			  WHERE query !~* '(pg_stat_statements|bench\.wait_batch|batch\.submit|clock_timestamp|pg_reload_conf|ALTER SYSTEM|^SELECT [$]1,\s+round)'
			  ORDER BY total_exec_time DESC LIMIT 8" |
			while IFS='|' read -r calls total mean rows share query; do
				printf '   %8s %9s %9s %9s %5s%%  %s\n' "$(num "$calls")" "$(num "$total")" "$mean" \
					"$(num "$rows")" "$share" "$(cut -c1-58 <<<"$query")"
			done
		echo "   (%wall: share of the two executors' wall time; commits, waits on sockets and the"
		echo "   executor's C code are not statements)"
	else
		echo "   $R_ERR"
	fi
}

# ---------------------------------------------------------------- 6. pacing
section_6() {
	local ideal n429 before
	ideal=$(awk -v n="$paced_items" 'BEGIN { printf "%.1f", n / 20 }')
	echo
	echo "6. Pacing against a provider's limit of 20 requests a second: $(num "$paced_items") items, one POST each,"
	echo "   max_concurrency 16; ideal = items / 20 = $ideal s"
	echo
	printf '   %-52s %7s %7s %9s %7s %9s
' "" "wall s" "/ideal" "completed" "429s" "attempts"
	settle
	: >"$work/nginx/limit_access.log"
	run_batch http_paced "$paced_items" paced || true
	n429=$(grep -c '^429$' "$work/nginx/limit_access.log" || true)
	printf '   %-52s %7.2f %7.2f %9s %7s %9s\n' "nginx limit_req 20r/s burst=5, rate_limit => 1200" \
		"${R_WALL:-0}" "$(awk -v w="${R_WALL:-0}" -v i="$ideal" 'BEGIN { printf "%.2f", w / i }')" \
		"$R_DONE" "$n429" "$R_ATT"
	before=$(curl -s "$api_url/_stats?keys=0" | python3 -c 'import json, sys; print(json.load(sys.stdin)["rate_limited"])')
	run_batch http_headers "$paced_items" headers || true
	n429=$(($(curl -s "$api_url/_stats?keys=0" | python3 -c 'import json, sys; print(json.load(sys.stdin)["rate_limited"])') - before))
	printf '   %-52s %7.2f %7.2f %9s %7s %9s\n' "fake API, x-ratelimit-* headers, no rate_limit" \
		"${R_WALL:-0}" "$(awk -v w="${R_WALL:-0}" -v i="$ideal" 'BEGIN { printf "%.2f", w / i }')" \
		"$R_DONE" "$n429" "$R_ATT"
	echo "   (the fake API answers after ${slow_ms} ms; a 429 is retried after a backoff of 200 ms and up)"
}

# ---------------------------------------------------------------- 7. in flight
# the private memory (RssAnon, MB) of the given pids together
anon_of() {
	local p t=0
	for p in "$@"; do t=$(awk -v t="$t" '/^RssAnon/ { t += $2 / 1024 } END { printf "%.1f", t }' "/proc/$p/status" 2>/dev/null || echo "$t"); done
	echo "$t"
}
section_7() {
	local f n pids idle peak grow t_first t_ramp mean_f req_ms held
	local -A flight_time=()
	echo
	echo "7. Many in flight: nginx answering every request after 1 s (echo_sleep), workers 2, claim $flight_claim,"
	echo "   max_http_in_flight = in flight / 2, the endpoint's max_concurrency = in flight; items = in flight"
	echo "   x $flight_s; ideal = in flight / 1 s.  Fresh executors for each row."
	echo
	printf '   %9s %8s %9s %9s %7s %7s %13s %13s %7s\n' "in flight" "items" "ideal/s" "achieved" "share" \
		"wall s" "idle anon MB" "peak anon MB" "KB/req"
	for f in $flights; do
		n=$((f * flight_s))
		set_gucs pgbatch.workers 0
		wait_executors 0 || continue
		q -c "SELECT batch.alter_endpoint('sleepy', max_concurrency => $f)" >/dev/null
		set_gucs pgbatch.workers 2 pgbatch.max_http_in_flight $((f / 2)) pgbatch.claim_batch_size "$flight_claim"
		wait_executors 2 || continue
		settle
		pids=$(exec_pids)
		# shellcheck disable=SC2086
		idle=$(anon_of $pids)
		# the peak private memory of the executors, read every 200 ms
		# shellcheck disable=SC2086
		(
			m=0
			while :; do
				m=$(awk -v m="$m" -v c="$(anon_of $pids)" 'BEGIN { print (c > m ? c : m) }')
				echo "$m" >"$work/anon_peak"
				sleep 0.2
			done
		) &
		sampler=$!
		run_batch http_sleepy "$n" "flight_$f" || true
		stop_pid "$sampler"
		sampler=
		peak=$(cat "$work/anon_peak" 2>/dev/null || echo "$idle")
		grow=$(awk -v a="$idle" -v b="$peak" -v f="$f" 'BEGIN { printf "%.1f", (b - a) * 1024 / f }')
		printf '   %9s %8s %9s %9s %6s%% %7.2f %13s %13s %7s\n' "$(num "$f")" "$(num "$n")" "$(num "$f")" \
			"$(num "$(rate "$R_DONE" "${R_WALL:-0}")")" "$(pct "$(rate "$R_DONE" "${R_WALL:-0}")" "$f")" \
			"${R_WALL:-0}" "$idle" "$peak" "$grow"
		[ -z "$R_ERR" ] || printf '   %9s !! %s\n' "" "$R_ERR"
		flight_time["$f"]=$(q -c "WITH a AS (SELECT started_at, finished_at FROM batch.attempts WHERE batch_id = ${R_BID:-0}),
				w AS (SELECT (SELECT started_at FROM a ORDER BY started_at OFFSET $((f - 1)) LIMIT 1) AS t0,
					(SELECT max(started_at) FROM a) AS t1)
			SELECT round(extract(epoch FROM min(a.started_at) - b.created_at)::numeric - ${R_SUBMIT:-0}, 2),
				round(extract(epoch FROM w.t0 - min(a.started_at))::numeric, 2),
				round((sum(extract(epoch FROM a.finished_at - a.started_at))
					/ nullif(extract(epoch FROM max(a.finished_at) - min(a.started_at)), 0))::numeric),
				round(avg(extract(epoch FROM a.finished_at - a.started_at))::numeric * 1000),
				round(count(*) FILTER (WHERE a.finished_at > w.t0 AND a.finished_at <= w.t1)
					/ nullif(extract(epoch FROM w.t1 - w.t0), 0))
			FROM a, w, batch.batches b WHERE b.id = ${R_BID:-0} GROUP BY b.created_at, w.t0, w.t1")
	done
	echo
	echo "   where the time went (batch.attempts): the submit's commit to the first request; first request to the"
	echo "   in-flight-th start (the ramp); mean requests in flight from first start to last answer;"
	echo "   mean request time (answer 1 s later, plus the executor's pick-up); held: the answers per"
	echo "   second between the ramp's end and the last request's start (all slots busy), and its share"
	echo "   of the ideal (the whole-batch share above also pays the ramp and its mirror, the last wave)"
	printf '   %9s %14s %9s %15s %11s %9s %6s\n' "in flight" "first request s" "ramp s" "mean in flight" "request ms" \
		"held/s" "share"
	for f in $flights; do
		IFS='|' read -r t_first t_ramp mean_f req_ms held <<<"${flight_time[$f]:-}"
		printf '   %9s %14s %9s %15s %11s %9s %5s%%\n' "$(num "$f")" "${t_first:--}" "${t_ramp:--}" "$(num "${mean_f:-0}")" \
			"${req_ms:--}" "$(num "${held:-0}")" "$(pct "${held:-0}" "$f")"
	done
	set_gucs pgbatch.max_http_in_flight "$in_flight_per_worker" pgbatch.claim_batch_size 100
	echo "   (anon: the executors' private memory, RssAnon, both together; KB/req = (peak - idle) / in flight)"
	echo "   target: >= 95% of ideal"
}

# warm-up, not reported: the executors plan their statements on a filled
# batch.items, then every section starts from settled statistics
if ! { run_batch http_nginx "$warmup" warmup && [ -z "$R_ERR" ]; }; then
	echo "warm-up failed: $R_ERR" >&2
	exit 1
fi
echo
printf '   warm-up (not reported): %s items through the nginx HTTP stage, %s items/s\n' \
	"$(num "$warmup")" "$(num "$(rate "$R_DONE" "$R_WALL")")"

for s in $sections; do
	"section_$s"
done

# ---------------------------------------------------------------- server log
echo
bench_log_summary "$cluster/server.log"
rule
echo "done in $(($(date +%s) - started)) s; load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
