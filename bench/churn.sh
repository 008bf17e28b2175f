#!/usr/bin/env bash
# bench/churn.sh - pgbatch under churn: batch after batch through the background
# executors, autovacuum left to itself.  Prints figures, asserts nothing about
# speed.
#
#   bash bench/churn.sh        (Debian 12, as root; about 4-6 minutes)
#
# What it measures (issue 12: batches back to back, the worst one-second rate
# against the median, the slowest batch against the fastest, the sizes of the
# tables after; >= 25,000 SQL stage executions/s held, also after a mixed
# history), on a throwaway PostgreSQL 15 cluster set up as for bench/http.sh
# (pgbatch preloaded, fsync and synchronous_commit on, pgbatch.workers 2,
# claim_batch_size 100, max_http_in_flight 64), autovacuum on as by default:
#   A. $PGB_CHURN_SQL_BATCHES (10) batches of $PGB_CHURN_SQL_ITEMS (200,000)
#      items of a 1-stage no-op SQL pipeline;
#   B. $PGB_CHURN_HTTP_BATCHES (10) batches of $PGB_CHURN_HTTP_ITEMS (100,000)
#      items of a 1-stage HTTP pipeline (one POST each) against a local nginx;
#   C. the mixed history: $PGB_CHURN_MIXED_BATCHES (3) more batches as in A,
#      so that a plan or cache gone stale during B cannot hide;
# then the batch.* tables: sizes (indexes too), dead tuples, HOT updates of
# batch.items, autovacuum runs.  Per phase: per batch, items / (finished -
# submit's commit); per second, the items completed between two consecutive
# samples that both lie inside one batch's run (the partial first and last
# second of a batch and the gaps between batches are left out): the median,
# the worst (when, and what autovacuum and the checkpointer did then); the
# WAL written and full-page images per second of each batch (pg_stat_wal).
# Two yardsticks for the batch ratios, measured in the same run: the
# submits' own spread (the same statement in one backend, each batch) and
# a fixed CPU loop timed 20 times on the idle machine before phase A (on a
# shared virtual machine its slowest run can be a quarter slower than its
# fastest, a spread no software can get below).
#
# How: installs the dependencies (test/lib.sh), builds and installs the
# extension (PGB_BUILD=0: uses it as installed); starts a cluster owned
# by postgres in a mktemp dir on 127.0.0.1:$PGB_CHURN_PORT (54351) and nginx
# (a foreground child, one worker, 127.0.0.1:$PGB_CHURN_NGINX_PORT (18094),
# answering {"ok":true}), each stopped on exit by its own pid.  Each batch is
# submitted when the one before has finished (batch.progress read every
# 100 ms); only the executors run items.  A warm-up (an SQL and an HTTP batch
# of $PGB_CHURN_WARMUP items, not reported) is followed by the one ANALYZE of
# the batch tables and a CHECKPOINT; no VACUUM or ANALYZE after that.  A
# sampler, one psql session fed a query a second (idle in between, so it
# holds no snapshot), logs clock_timestamp(), the completed items summed over
# batch.counters, whether the checkpointer is busy, what the autovacuum
# workers do (pg_stat_activity, pg_stat_progress_vacuum) and pg_stat_wal.
# Knobs (environment): those above, PGB_CHURN_WARMUP (20000), PGB_CHURN_WAIT
# (180: seconds to wait for one batch), PGB_BENCH_STATEMENT_TIMEOUT (300s),
# PGB_BENCH_MEM_LIMIT_GB (8), PGB_BUILD=0, PGB_KEEP=1 to keep the work dir
# (server.log with log_autovacuum_min_duration=0, samples.txt, batches.txt).
set -euo pipefail
. "$(dirname "$0")/../test/lib.sh"
. "$(dirname "$0")/lib.sh"

port=${PGB_CHURN_PORT:-54351}
nginx_port=${PGB_CHURN_NGINX_PORT:-18094}
sql_items=${PGB_CHURN_SQL_ITEMS:-200000}
sql_batches=${PGB_CHURN_SQL_BATCHES:-10}
http_items=${PGB_CHURN_HTTP_ITEMS:-100000}
http_batches=${PGB_CHURN_HTTP_BATCHES:-10}
mixed_batches=${PGB_CHURN_MIXED_BATCHES:-3}
warmup=${PGB_CHURN_WARMUP:-20000}
wait_s=${PGB_CHURN_WAIT:-180}
mem_limit_gb=${PGB_BENCH_MEM_LIMIT_GB:-8}
export PGOPTIONS="-c statement_timeout=${PGB_BENCH_STATEMENT_TIMEOUT:-300s}"

# bench/http.sh's cluster, pgbatch settings on the command line (no reloads)
# shellcheck disable=SC2054
settings=(
	"${PGB_BENCH_SETTINGS[@]}"
	shared_preload_libraries=pgbatch,pg_stat_statements
	pg_stat_statements.track=none
	pgbatch.workers=2 pgbatch.claim_batch_size=100 pgbatch.max_http_in_flight=64
	log_autovacuum_min_duration=0
)
shown=(shared_buffers max_wal_size checkpoint_timeout fsync synchronous_commit autovacuum
	autovacuum_naptime autovacuum_vacuum_scale_factor autovacuum_vacuum_insert_scale_factor
	autovacuum_analyze_scale_factor autovacuum_vacuum_cost_limit autovacuum_vacuum_cost_delay
	pgbatch.workers pgbatch.claim_batch_size pgbatch.max_http_in_flight)
shown_settings="${shown[*]}"

started=$(date +%s)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
code=$(git -C "$PGB_TOP" rev-parse --short HEAD 2>/dev/null || echo "not a git checkout")
dirty=$(git -C "$PGB_TOP" status --porcelain 2>/dev/null | grep -c . || true)
[ "$dirty" != 0 ] && code="$code, plus $dirty changed or new files in the working tree"
so="$("$PG_BIN/pg_config" --pkglibdir)/pgbatch.so"
work=$(mktemp -d /tmp/pgbatch-churn-bench.XXXXXX)
chown postgres: "$work"
cluster="$work/cluster"
nginx_pid='' sampler_pid='' feeder_pid=''

cleanup() {
	local status=$?
	stop_pid "$feeder_pid"
	stop_pid "$sampler_pid"
	pgb_cluster_stop "$cluster"
	stop_pid "$nginx_pid"
	if [ "${PGB_KEEP:-}" = "" ]; then rm -rf "$work"; else echo "kept $work"; fi
	exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! { pgb_install_deps && pgb_apt_install nginx-light curl &&
	if [ "${PGB_BUILD:-1}" != 0 ]; then pgb_build_install; fi; } >"$work/setup.log" 2>&1; then
	echo "setup failed; the end of $work/setup.log:" >&2
	tail -n 40 "$work/setup.log" >&2
	exit 1
fi
# the library the servers load (after the build above installed it)
so_at=$(date -u -r "$so" '+%Y-%m-%d %H:%M:%S UTC' 2>/dev/null || echo "?")
if [ ! -f "$("$PG_BIN/pg_config" --sharedir)/extension/pgbatch.control" ]; then
	echo "pgbatch is not installed: make install first, or leave PGB_BUILD unset" >&2
	exit 1
fi
for p in "$port" "$nginx_port"; do
	if ss -Htln "sport = :$p" 2>/dev/null | grep -q .; then
		echo "port $p on this machine is taken; set PGB_CHURN_PORT / PGB_CHURN_NGINX_PORT" >&2
		exit 1
	fi
done

# ---------------------------------------------------------------- servers
mkdir -p "$work/nginx"
bench_nginx_conf "$work/nginx" "$nginx_port"
nginx -e "$work/nginx/error.log" -p "$work/nginx/" -c "$work/nginx/nginx.conf" >"$work/nginx/stdout" 2>&1 &
nginx_pid=$!
for _ in $(seq 1 100); do
	curl -s -m 1 -o /dev/null "http://127.0.0.1:$nginx_port/" && break
	sleep 0.1
done
if [ "$(curl -s -m 2 -X POST -d '{}' "http://127.0.0.1:$nginx_port/x")" != '{"ok":true}' ]; then
	echo "nginx did not start:" >&2
	cat "$work/nginx/stdout" "$work/nginx/error.log" >&2
	exit 1
fi
# the limit is inherited by the postmaster and so by every backend
( ulimit -v $((mem_limit_gb * 1024 * 1024)); pgb_cluster_start "$cluster" "$port" "${settings[@]}" )

# psql, unaligned, '|'-separated, no headers; qin reads its script from stdin
qin() { pgb_psql "$cluster" "$port" -d postgres -qAt -F'|' "$@"; }
q() { qin "$@" </dev/null; }
last_error() { grep -m1 -E 'ERROR|FATAL|error' "$work/last.err" | sed 's/^.*\(ERROR\|FATAL\): *//' | cut -c1-70; }
# 1234567 -> 1,234,567
num() { printf '%.0f' "$1" | sed -e ':a' -e 's/\([0-9]\)\([0-9]\{3\}\)\($\|,\)/\1,\2\3/' -e 'ta'; }
rule() { printf '%s\n' "--------------------------------------------------------------------------------------------"; }

# the extension, the pipelines, the item arrays (built once) and a wait
# procedure that commits between its reads of batch.progress
qin -v url="http://127.0.0.1:$nginx_port" -v sizes="$sql_items,$http_items,$warmup" 2>"$work/last.err" >/dev/null <<'EOF' ||
SET client_min_messages = warning;
CREATE EXTENSION pgbatch;
CREATE SCHEMA bench;
CREATE FUNCTION bench.noop(p jsonb, o jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT ''{}''::jsonb';
SELECT batch.create_endpoint('nginx', :'url', max_concurrency => 256);
SELECT batch.create_pipeline('sql_1', '[{"name": "s1", "sql": "bench.noop"}]');
SELECT batch.create_pipeline('http_1', '[{"name": "call", "http": {"endpoint": "nginx", "method": "POST", "path": "/x"}}]');
CREATE TABLE bench.arrays (n integer PRIMARY KEY, a jsonb NOT NULL);
INSERT INTO bench.arrays SELECT s.n, (SELECT jsonb_agg(jsonb_build_object('n', g)) FROM generate_series(1, s.n) g)
FROM (SELECT DISTINCT unnest(ARRAY[:sizes]::integer[]) AS n) s;
CREATE PROCEDURE bench.wait_batch(bid bigint, timeout_s float8, INOUT seen numeric DEFAULT NULL,
	INOUT status text DEFAULT NULL) LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz := clock_timestamp();
BEGIN
	LOOP
		SELECT p.status INTO status FROM batch.progress p WHERE p.id = bid;
		EXIT WHEN status IN ('completed', 'partial', 'failed', 'cancelled');
		IF clock_timestamp() - t0 > make_interval(secs => timeout_s) THEN status := 'timeout'; EXIT; END IF;
		COMMIT;
		PERFORM pg_sleep(0.1);
	END LOOP;
	seen := extract(epoch FROM clock_timestamp());
END $$;
EOF
	{ echo "setup failed: $(cat "$work/last.err")" >&2; exit 1; }
# one batch: submit (its own transaction), wait; prints
# batch id|submit start|submit commit|finished|status|completed|failed (epochs)
cat >"$work/batch.sql" <<'EOF'
\set ON_ERROR_STOP 1
SELECT extract(epoch FROM clock_timestamp()) AS t_sub \gset
SELECT batch.submit(:'pipeline', (SELECT a FROM bench.arrays WHERE n = :n), name => :'name') AS bid \gset
SELECT extract(epoch FROM clock_timestamp()) AS t0 \gset
CALL bench.wait_batch(:bid, :timeout) \gset w_
SELECT :bid, :t_sub, :t0, least(coalesce(extract(epoch FROM p.finished_at), :w_seen), :w_seen),
	   :'w_status', p.completed, p.failed FROM batch.progress p WHERE p.id = :bid;
EOF
for i in $(seq 1 100); do
	[ "$(q -c "SELECT count(*) FROM batch.workers")" = 2 ] && break
	[ "$i" = 100 ] && { echo "2 executors were not running after 20 s" >&2; exit 1; }
	sleep 0.2
done

# run_batches PHASE PIPELINE ITEMS COUNT: one batch after the other (a batch
# not finished within $wait_s s is cancelled); appends
# phase|k|items|submit start|submit commit|finished|status|completed|failed
# to batches.txt (not for the warm-up phase W)
run_batches() {
	local ph=$1 pipe=$2 n=$3 count=$4 k res bid t_sub t0 t_end status ndone failed
	for k in $(seq 1 "$count"); do
		if ! res=$(q -f "$work/batch.sql" -v pipeline="$pipe" -v n="$n" -v name="${ph}_${pipe}_$k" \
			-v timeout="$wait_s" 2>"$work/last.err"); then
			echo "   !! phase $ph, batch $k failed: $(last_error)" >>"$work/problems.txt"
			return 1
		fi
		IFS='|' read -r bid t_sub t0 t_end status ndone failed <<<"$res"
		[ "$ph" = W ] || echo "$ph|$k|$n|$t_sub|$t0|$t_end|$status|$ndone|$failed" >>"$work/batches.txt"
		if [ "$status" != completed ] || [ "$ndone" != "$n" ]; then
			echo "   !! phase $ph, batch $k: status $status, $ndone of $n completed, $failed failed" >>"$work/problems.txt"
			q -c "SELECT batch.cancel($bid)" >/dev/null 2>&1 || true
			[ "$ph" != W ] || return 1 # a measured phase goes on with its next batch
		fi
	done
}

# warm-up, not reported; then the one ANALYZE and a checkpoint
if ! { run_batches W sql_1 "$warmup" 1 && run_batches W http_1 "$warmup" 1; }; then
	echo "warm-up failed:" >&2
	cat "$work/problems.txt" >&2
	exit 1
fi
q -c "ANALYZE batch.items" -c "ANALYZE batch.queue" -c "ANALYZE batch.attempts" -c "ANALYZE batch.outputs" \
	-c "ANALYZE batch.counters" -c "CHECKPOINT" >/dev/null

# the machine's own spread: one fixed CPU loop (awk, single-threaded, no
# I/O), timed $probe_runs times on the idle machine; no batch ratio can be
# read more finely than this
probe_runs=20
for _ in $(seq 1 "$probe_runs"); do
	t_a=$(date +%s%N)
	awk 'BEGIN { for (i = 0; i < 2e7; i++) s += i * i }'
	echo $(($(date +%s%N) - t_a)) >>"$work/probe.txt"
done

# the sampler: one psql session, fed one query a second through a fifo
mkfifo "$work/sampler.fifo"
pgb_psql "$cluster" "$port" -d postgres -qAt -F'|' -f "$work/sampler.fifo" >"$work/samples.txt" 2>"$work/sampler.err" &
sampler_pid=$!
sample_sql="SELECT extract(epoch FROM clock_timestamp()), (SELECT coalesce(sum(completed), 0) FROM batch.counters),
 (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'checkpointer' AND wait_event IS DISTINCT FROM 'CheckpointerMain'),
 (SELECT coalesce(string_agg(regexp_replace(a.query, '^autovacuum: ', '') || coalesce(' (' || v.phase || ')', ''), '; '
  ORDER BY a.pid), '') FROM pg_stat_activity a LEFT JOIN pg_stat_progress_vacuum v ON v.pid = a.pid
  WHERE a.backend_type = 'autovacuum worker' AND a.query LIKE 'autovacuum:%'),
 w.wal_bytes, w.wal_fpi FROM pg_stat_wal w;"
sample_sql=${sample_sql//$'\n'/}
(while [ ! -e "$work/sampler.stop" ]; do echo "$sample_sql"; sleep 1; done) >"$work/sampler.fifo" &
feeder_pid=$!

sleep 2
if run_batches A sql_1 "$sql_items" "$sql_batches"; then
	if run_batches B http_1 "$http_items" "$http_batches"; then run_batches C sql_1 "$sql_items" "$mixed_batches" || true; fi
fi
sleep 2
touch "$work/sampler.stop"
for _ in $(seq 1 50); do kill -0 "$sampler_pid" 2>/dev/null || break; sleep 0.1; done
stop_pid "$feeder_pid"
stop_pid "$sampler_pid"
sleep 1 # the executors report their statistics at most once a second

# ---------------------------------------------------------------- environment
echo "pgbatch churn benchmark                              $(date -u '+%Y-%m-%d %H:%M UTC')"
rule
printf '%-13s %s\n' "code" "$code"
printf '%-13s %s\n' "" "installed extension: $(q -c "SELECT extversion FROM pg_extension WHERE extname = 'pgbatch'"), $so of $so_at"
so_now=$(date -u -r "$so" '+%Y-%m-%d %H:%M:%S UTC' 2>/dev/null || echo "?")
[ "$so_now" = "$so_at" ] || printf '%-13s %s\n' "" "!! $so was replaced during the run ($so_now): processes started later used the new one"
printf '%-13s %s CPUs (%s), %s GB RAM, Linux %s\n' "machine" "$(nproc)" \
	"$(lscpu | sed -n 's/^Model name: *//p' | head -1)" \
	"$(awk '/MemTotal/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)" "$(uname -r)"
printf '%-13s %s\n' "load average" "$load_start at start (anything else running skews the figures)"
fs=$(df -T "$cluster" | awk 'NR == 2 { print $2 " on " $1 }')
printf '%-13s %s\n' "server" "$(q -c "SELECT 'PostgreSQL ' || current_setting('server_version')"), data dir $fs, $cluster"
line=$(q -c "$(bench_settings_sql "$shown_settings")")
printf '%-13s %s\n' "settings" "$(echo "$line" | fold -s -w 78 | sed '2,$s/^/              /')"
printf '%-13s %s\n' "nginx" "$(nginx -v 2>&1 | sed 's/^nginx version: //'), 1 worker, 127.0.0.1:$nginx_port, endpoint max_concurrency 256"
printf '%-13s %s\n' "sampler" "$(grep -c . "$work/samples.txt" || true) samples$([ -s "$work/sampler.err" ] && echo ", errors: $(head -c 200 "$work/sampler.err")")"
[ ! -s "$work/problems.txt" ] || cat "$work/problems.txt"
sort -n "$work/probe.txt" | awk -v n="$probe_runs" '{ t[NR] = $1 / 1e6 }
	END { printf "%-13s the same CPU loop, %d times on the idle machine before A: %.0f-%.0f ms,\n%-13s slowest / fastest %.2f: the spread of the machine itself, to read the batch ratios against\n",
		"machine noise", n, t[1], t[NR], "", t[1] / t[NR] }'

# report PHASE TITLE [sql]: the phase's batches and its one-second rates
report() {
	printf '\n%s\n\n' "$2"
	awk -F'|' -v ph="$1" -v sql="${3:-}" '
	function th(x,   s, r) { s = sprintf("%.0f", x); r = ""
		while (length(s) > 3) { r = "," substr(s, length(s) - 2) r; s = substr(s, 1, length(s) - 3) }
		return s r }
	function med(a, n,   s, i, j, t) { if (n == 0) return 0
		for (i = 1; i <= n; i++) s[i] = a[i]
		for (i = 2; i <= n; i++) { t = s[i]; for (j = i - 1; j >= 1 && s[j] > t; j--) s[j + 1] = s[j]; s[j + 1] = t }
		return n % 2 ? s[(n + 1) / 2] : (s[n / 2] + s[n / 2 + 1]) / 2 }
	FNR == NR { if ($1 == ph) { nb++; NS[nb] = $3; N[nb] = $8; S[nb] = $4; T0[nb] = $5; TE[nb] = $6 }; next }
	{ ns++; T[ns] = $1; C[ns] = $2; K[ns] = $3; A[ns] = $4; W[ns] = $5; F[ns] = $6 }
	END {
		if (nb == 0) { print "   (no batches)"; exit }
		for (i = 1; i < ns; i++) {
			for (b = 1; b <= nb; b++) if (T[i] >= T0[b] && T[i + 1] <= TE[b]) break
			if (b > nb) continue
			n++; R[n] = (C[i + 1] - C[i]) / (T[i + 1] - T[i]); RB[n] = b; RT[n] = T[i]
			if (!(b in WS)) { WS[b] = i; }
			WE[b] = i + 1
			RV[n] = (A[i] A[i + 1]) ~ /batch\.items/; RK[n] = (K[i] + K[i + 1] > 0)
			RA[n] = A[i] == A[i + 1] ? A[i] : A[i] " -> " A[i + 1]
			if (RV[n]) { nv++; V[nv] = R[n] } else { nq++; Q[nq] = R[n] }
		}
		printf "   %5s %8s %7s %9s %7s %9s %9s %7s %8s %8s\n", "batch", "submit", "wall", "items/s", "full", "median", "worst", "autovac", "WAL", "full-page"
		printf "   %5s %8s %7s %9s %7s %9s %9s %7s %8s %8s\n", "", "items/s", "s", "", "seconds", "1-s rate", "1-s rate", "items s", "MB/s", "images/s"
		lo = 0; hi = 0
		for (b = 1; b <= nb; b++) {
			m = 0; w = -1; v = 0; delete X
			for (i = 1; i <= n; i++) if (RB[i] == b) { X[++m] = R[i]; if (w < 0 || R[i] < w) w = R[i]; v += RV[i] }
			BR[b] = N[b] / (TE[b] - T0[b]); BX[b] = BR[b]
			if (!lo || BR[b] < BR[lo]) lo = b
			if (!hi || BR[b] > BR[hi]) hi = b
			if (b in WS) { dt = T[WE[b]] - T[WS[b]]; wm = sprintf("%.1f", (W[WE[b]] - W[WS[b]]) / dt / 1048576)
				fp = th((F[WE[b]] - F[WS[b]]) / dt) } else { wm = "-"; fp = "-" }
			printf "   %5d %8s %7.2f %9s %7d %9s %9s %7d %8s %8s\n", b, th(NS[b] / (T0[b] - S[b])), TE[b] - T0[b],
				th(BR[b]), m, th(med(X, m)), (w < 0 ? "-" : th(w)), v, wm, fp
		}
		printf "\n   batches: slowest %s items/s (batch %d), fastest %s (batch %d): slowest / fastest %.2f (target >= 0.80)\n",
			th(BR[lo]), lo, th(BR[hi]), hi, BR[lo] / BR[hi]
		slo = 0; shi = 0
		for (b = 1; b <= nb; b++) { x = NS[b] / (T0[b] - S[b]); if (!slo || x < slo) slo = x; if (x > shi) shi = x }
		printf "   control: the submits (the same statement each batch, one backend): slowest / fastest %.2f\n", slo / shi
		if (sql) printf "   SQL stage executions/s (1 stage per item): median of the batches %s, slowest %s (target >= 25,000)\n",
			th(med(BX, nb)), th(BR[lo])
		if (n == 0) { print "   no full seconds sampled"; exit }
		md = med(R, n); w = 1; low = 0
		for (i = 1; i <= n; i++) { if (R[i] < R[w]) w = i; if (R[i] < md / 2) low++ }
		printf "   one-second rates: %d full seconds, median %s/s; worst %s/s = %.2f of the median (target >= 0.50);\n",
			n, th(md), th(R[w]), R[w] / md
		printf "   %d seconds below half the median\n", low
		printf "   worst second: +%.0f s into the phase, +%.0f s into batch %d; autovacuum: %s; checkpointer %s\n",
			RT[w] - S[1], RT[w] - T0[RB[w]], RB[w], (RA[w] == "" ? "idle" : RA[w]), (RK[w] ? "busy" : "idle")
		printf "   seconds with autovacuum on batch.items: %d, median %s/s; without: %d, median %s/s\n",
			nv, (nv ? th(med(V, nv)) : "-"), nq, (nq ? th(med(Q, nq)) : "-")
	}' "$work/batches.txt" "$work/samples.txt"
}

touch "$work/batches.txt" "$work/samples.txt"
[ -s "$work/batches.txt" ] || { echo "no batch finished"; exit 1; }
report A "A. $sql_batches batches x $(num "$sql_items") items, 1-stage no-op SQL pipeline, fresh cluster (after the warm-up)" sql
report B "B. $http_batches batches x $(num "$http_items") items, 1-stage HTTP pipeline against nginx ($(num $((http_batches * http_items))) requests)"
report C "C. mixed history: $mixed_batches batches x $(num "$sql_items") items of the SQL pipeline after A and B" sql
echo
awk -F'|' '$1 == "A" || $1 == "C" { r = $8 / ($6 - $5); if ($1 == "A") { a += r; na++ } else { c += r; nc++ } }
	END { if (na && nc) printf "   C against A (mean items/s of the batches): %.0f against %.0f = %.2f\n", c / nc, a / na, (c / nc) / (a / na) }' \
	"$work/batches.txt"

# ---------------------------------------------------------------- autovacuum
printf '\n%s\n%s\n\n' "Autovacuum on batch.* as the sampler saw it (once a second; shorter runs can slip between" \
	"samples), seconds since the start of phase A"
awk -F'|' '
	FNR == NR { nb++; P[nb] = $1; B[nb] = $2; T0[nb] = $5; TE[nb] = $6; if (nb == 1) t00 = $4; next }
	function at(t,   j) { for (j = 1; j <= nb; j++) if (t >= T0[j] && t <= TE[j]) return P[j] B[j]; return "gap" }
	function emit(s, a, e) { printf "%9.0f %7.0f %6.0f   %-4s %-4s %s\n", a - t00, e - t00, e - a, at(a), at(e), s }
	{ split("", cur); m = split($4, x, "; ")
	  for (i = 1; i <= m; i++) { s = x[i]; sub(/ \(.*$/, "", s); if (s ~ / batch\./) cur[s] = 1 }
	  for (s in open) if (!(s in cur)) { emit(s, open[s], prev); delete open[s] }
	  for (s in cur) if (!(s in open)) open[s] = $1
	  prev = $1 }
	END { for (s in open) emit(s, open[s], prev) }' "$work/batches.txt" "$work/samples.txt" | sort -n >"$work/av.txt" || true
if [ -s "$work/av.txt" ]; then
	printf '   %9s %7s %6s   %-4s %-4s %s\n' "from s" "to s" "s" "in" "to" "what"
	sed 's/^/   /' "$work/av.txt"
else
	echo "   none seen"
fi

# ---------------------------------------------------------------- sizes
printf '\nTables after %s items (warm-up included), from pg_stat_user_tables:\n\n' \
	"$(num $(((sql_batches + mixed_batches) * sql_items + http_batches * http_items + 2 * warmup)))"
printf '   %-16s %9s %9s %9s %10s %9s %7s %7s\n' "table" "total" "heap" "indexes" "live" "dead" "auto" "auto"
printf '   %-16s %9s %9s %9s %10s %9s %7s %7s\n' "" "" "" "" "tuples" "tuples" "vacuum" "analyze"
q -c "SELECT s.relname, pg_size_pretty(pg_total_relation_size(s.relid)), pg_size_pretty(pg_relation_size(s.relid)),
		pg_size_pretty(pg_indexes_size(s.relid)), s.n_live_tup, s.n_dead_tup, s.autovacuum_count, s.autoanalyze_count
	  FROM pg_stat_user_tables s WHERE s.schemaname = 'batch'
	  ORDER BY pg_total_relation_size(s.relid) DESC, s.relname" |
	while IFS='|' read -r t tot heap idx live dead av aa; do
		printf '   %-16s %9s %9s %9s %10s %9s %7s %7s\n' "$t" "$tot" "$heap" "$idx" "$(num "$live")" "$(num "$dead")" "$av" "$aa"
	done
echo
printf '   batch.* in all: %s\n' "$(q -c "SELECT pg_size_pretty(sum(pg_total_relation_size(relid))) FROM pg_stat_user_tables WHERE schemaname = 'batch'")"
printf '   batch.items indexes: %s\n' "$(q -c "SELECT string_agg(indexrelname || ' ' || pg_size_pretty(pg_relation_size(indexrelid)), ', '
	ORDER BY pg_relation_size(indexrelid) DESC) FROM pg_stat_user_indexes WHERE schemaname = 'batch' AND relname = 'items'")" |
	fold -s -w 88 | sed '2,$s/^/      /'
IFS='|' read -r upd hot <<<"$(q -c "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relid = 'batch.items'::regclass")"
printf '   batch.items updates: %s, HOT %s (%s%%)\n' "$(num "$upd")" "$(num "$hot")" \
	"$(awk -v a="$hot" -v b="$upd" 'BEGIN { if (b > 0) printf "%.0f", 100 * a / b; else print 0 }')"
printf '   checkpoints during the run: %s\n' "$(grep -acE 'LOG:  checkpoint starting: .*(wal|time)' "$cluster/server.log" || true)"

# ---------------------------------------------------------------- server log
echo
bench_log_summary "$cluster/server.log"
rule
echo "done in $(($(date +%s) - started)) s; load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
