#!/usr/bin/env bash
# bench/run.sh - pgbatch benchmark: prints figures, asserts nothing about speed.
#
#   bash bench/run.sh          (Debian 12, as root; about 2-3 minutes)
#
# What it measures, on a throwaway PostgreSQL 15 cluster with durable commits
# (fsync and synchronous_commit on):
#   1. throughput of one session executing a 100,000-item batch through no-op
#      pipelines with batch.run(): 1 and 3 SQL stages (the headline), a bigger
#      claim chunk, batch.run() in committed slices, PL/pgSQL and C stages;
#   2. where one batch.run() call spends its time (pg_stat_statements);
#   3. batch.retry_failed() on a 1,000,000-item batch with 10,000 failed next
#      to a 10,000-item batch with all 10,000 failed (median of 5, and ratio);
#   4. SELECT * FROM batch.progress WHERE name = ... on the 1,000,000-item batch.
# The background executors and HTTP stages have their own benchmark, run on
# its own: bash bench/http.sh (about 5-6 minutes).
#
# How: installs the dependencies and builds and installs the extension
# (test/lib.sh; output in the work dir's setup.log), starts a cluster owned by
# postgres in a mktemp dir on 127.0.0.1:$PGB_BENCH_PORT (default 54339), runs
# the bench/*.sql scripts with psql, and stops the cluster on exit.  Timings
# are taken inside the server with clock_timestamp() (submit and run: in the
# statements around them, so commits count; connection start-up never does).
# Knobs (environment): PGB_BENCH_ITEMS (100000),
# PGB_BENCH_BIG (1000000), PGB_BENCH_FAILED (10000), PGB_BENCH_REPS (5),
# PGB_BENCH_PROGRESS_RUNS (50), PGB_BENCH_STATEMENT_TIMEOUT (180s, per
# statement, so that a pathological case cannot hang the run),
# PGB_BENCH_MEM_LIMIT_GB (8: address-space limit of every server process, so
# that a memory leak fails one case with "out of memory" instead of taking the
# machine down), PGB_KEEP=1 to keep the work dir.
set -euo pipefail
. "$(dirname "$0")/../test/lib.sh"
. "$(dirname "$0")/lib.sh"

bench_dir="$PGB_TOP/bench"
port=${PGB_BENCH_PORT:-54339}
items=${PGB_BENCH_ITEMS:-100000}
big=${PGB_BENCH_BIG:-1000000}
failed=${PGB_BENCH_FAILED:-10000}
reps=${PGB_BENCH_REPS:-5}
progress_runs=${PGB_BENCH_PROGRESS_RUNS:-50}
mem_limit_gb=${PGB_BENCH_MEM_LIMIT_GB:-8}
diag_items=$((items / 5))
export PGOPTIONS="-c statement_timeout=${PGB_BENCH_STATEMENT_TIMEOUT:-180s}"

# Cluster settings for a 2-core / 24 GB machine.  Commits stay durable.
settings=(
	"${PGB_BENCH_SETTINGS[@]}"
	shared_preload_libraries=pg_stat_statements
	pg_stat_statements.track=none
)
shown=(shared_buffers effective_cache_size work_mem maintenance_work_mem
	wal_buffers max_wal_size checkpoint_timeout fsync synchronous_commit
	full_page_writes wal_level autovacuum jit random_page_cost statement_timeout)
shown_settings="${shown[*]}"

started=$(date +%s)
work=$(mktemp -d /tmp/pgbatch-bench.XXXXXX)
chown postgres: "$work"
cluster="$work/cluster"
cleanup() {
	local status=$?
	pgb_cluster_stop "$cluster"
	if [ "${PGB_KEEP:-}" = "" ]; then rm -rf "$work"; else echo "kept $work"; fi
	exit $status
}
trap cleanup EXIT

if ! { pgb_install_deps && pgb_build_install; } >"$work/setup.log" 2>&1; then
	echo "setup failed; the end of $work/setup.log:" >&2
	tail -n 40 "$work/setup.log" >&2
	exit 1
fi
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
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
minmax() { tr ' ' '\n' | grep -v '^$' | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.1f .. %.1f", lo, hi }'; }
rule() { printf '%s\n' "--------------------------------------------------------------------------------------------"; }

q -c "SELECT 1" >/dev/null
qf setup.sql -v items="$items" -v diag_items="$diag_items" -v big="$big" -v small="$failed" >/dev/null || {
	echo "bench/setup.sql failed: $(cat "$work/last.err")" >&2
	exit 1
}

# warm-up (not reported): first use of each pipeline, relation and cache
for p in sql_1 sql_3 plpgsql_1 c_1; do
	if sub=$(qf submit.sql -v pipeline="$p" -v n="$failed" -v name="warmup_$p"); then
		qf run_batch.sql -v bid="${sub%%|*}" -v claim=100 -v slice=0 >/dev/null || true
	fi
done

# ---------------------------------------------------------------- environment
echo "pgbatch benchmark                                   $(date -u '+%Y-%m-%d %H:%M UTC')"
rule
code=$(git -C "$PGB_TOP" rev-parse --short HEAD 2>/dev/null || echo "not a git checkout")
dirty=$(git -C "$PGB_TOP" status --porcelain 2>/dev/null | grep -c . || true)
[ "$dirty" != 0 ] && code="$code, plus $dirty changed or new files in the working tree"
printf '%-13s %s\n' "code" "$code"
printf '%-13s %s CPUs (%s), %s GB RAM, Linux %s\n' "machine" "$(nproc)" \
	"$(lscpu | sed -n 's/^Model name: *//p' | head -1)" \
	"$(awk '/MemTotal/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)" "$(uname -r)"
printf '%-13s %s\n' "load average" "$(cut -d' ' -f1-3 /proc/loadavg) at start (anything else running skews the figures)"
printf '%-13s %s\n' "data dir" "$(df -T "$cluster" | awk 'NR == 2 { print $2 " on " $1 }'), $cluster"
printf '%-13s %s\n' "server" "$(q -c "SELECT 'PostgreSQL ' || current_setting('server_version')")"
line=$(q -c "SELECT string_agg(name || '=' || CASE WHEN unit = '8kB' THEN pg_size_pretty(setting::bigint * 8192)
		WHEN unit = 'kB' THEN pg_size_pretty(setting::bigint * 1024) WHEN unit = 'MB' THEN pg_size_pretty(setting::bigint * 1048576)
		WHEN unit IS NOT NULL THEN setting || unit ELSE setting END, ' ' ORDER BY array_position(string_to_array('$shown_settings', ' '), name))
	FROM pg_settings WHERE name = ANY (string_to_array('$shown_settings', ' '))")
printf '%-13s %s\n' "settings" "$(echo "$line" | fold -s -w 78 | sed '2,$s/^/              /')"
printf '%-13s %s\n' "" "pg_stat_statements loaded, track=none except in section 2; server processes limited to ${mem_limit_gb} GB address space"
printf '%-13s %s\n' "pgbatch" "pgbatch.claim_batch_size default $(q -c "SELECT batch_internal.max_payload_size() IS NOT NULL; SHOW pgbatch.claim_batch_size" | tail -1)"

# ---------------------------------------------------------------- 1. throughput
echo
echo "1. Throughput: one session runs a $(num "$items")-item batch with batch.run() (no-op stages)"
echo "   'one call' = a single batch.run(batch) call, so one transaction; 'slices of N' ="
echo "   batch.run(batch, N) repeated, committing after each.  Submit = batch.submit() of the"
echo "   items (array prebuilt); batch.items is VACUUM ANALYZEd between submit and run."
echo "   Backend peak MB = the running session's peak private memory (VmHWM less shared and"
echo "   file pages), so it grows with whatever a batch.run() call holds until it returns."
echo
printf '   %-24s %-16s %5s %9s %7s %9s %11s %8s\n' \
	"pipeline" "batch.run()" "claim" "submit" "run" "run" "run" "backend"
printf '   %-24s %-16s %5s %9s %7s %9s %11s %8s\n' \
	"" "" "chunk" "items/s" "s" "items/s" "stages/s" "peak MB"
n_case=0
# label | pipeline | stages | claim chunk | slice
while IFS='|' read -r label pipeline stages claim slice; do
	n_case=$((n_case + 1))
	if [ "$slice" = 0 ]; then how="one call"; else how="slices of $(num "$slice")"; fi
	if ! sub=$(qf submit.sql -v pipeline="$pipeline" -v n="$items" -v name="tp_$n_case"); then
		printf '   %-24s %-16s %5s  submit failed: %s\n' "$label" "$how" "$claim" "$(last_error)"
		continue
	fi
	IFS='|' read -r bid submit_s <<<"$sub"
	if ! res=$(qf run_batch.sql -v bid="$bid" -v claim="$claim" -v slice="$slice"); then
		printf '   %-24s %-16s %5s %9s  run failed: %s\n' "$label" "$how" "$claim" \
			"$(num "$(rate "$items" "$submit_s")")" "$(last_error)"
		continue
	fi
	IFS='|' read -r run_s stages_run completed n_failed calls peak_mb <<<"$res"
	printf '   %-24s %-16s %5s %9s %7.2f %9s %11s %8s\n' "$label" "$how" "$claim" \
		"$(num "$(rate "$items" "$submit_s")")" "$run_s" "$(num "$(rate "$completed" "$run_s")")" \
		"$(num "$(rate "$stages_run" "$run_s")")" "$(num "$peak_mb")"
	if [ "$completed" != "$items" ] || [ "$stages_run" != $((items * stages)) ]; then
		printf '   %-24s !! completed %s items and ran %s stages, expected %s and %s (%s failed)\n' \
			"" "$completed" "$stages_run" "$items" $((items * stages)) "$n_failed"
	fi
done <<EOF
SQL no-op, 1 stage|sql_1|1|100|0
SQL no-op, 3 stages|sql_3|3|100|0
SQL no-op, 1 stage|sql_1|1|1000|0
SQL no-op, 1 stage|sql_1|1|100|10000
PL/pgSQL no-op, 1 stage|plpgsql_1|1|100|0
C jsonb_concat, 1 stage|c_1|1|100|0
EOF
echo "   target: >= 10,000 stage executions/s for the SQL no-op pipelines, one call"

# ---------------------------------------------------------------- 2. statements
echo
echo "2. Where batch.run() spends its time: SQL no-op, 1 stage, $(num "$diag_items") items, one call,"
echo "   pg_stat_statements (track=all) in that session; nested statements overlap"
echo
if sub=$(qf submit.sql -v pipeline=sql_1 -v n="$diag_items" -v name=diag) &&
	res=$(qf statements.sql -v bid="${sub%%|*}" -v claim=100); then
	IFS='|' read -r run_s stages_run <<<"$(head -1 <<<"$res")"
	printf '   run: %.2f s for %s stage executions (%s/s)\n\n' "$run_s" "$(num "$stages_run")" \
		"$(num "$(rate "$stages_run" "$run_s")")"
	printf '   %8s %9s %9s %9s %5s  %s\n' "calls" "total ms" "mean ms" "rows" "%run" "statement"
	tail -n +2 <<<"$res" | while IFS='|' read -r calls total mean rows pct query; do
		printf '   %8s %9s %9s %9s %4s%%  %s\n' "$(num "$calls")" "$(num "$total")" "$mean" \
			"$(num "$rows")" "$pct" "$(cut -c1-60 <<<"$query")"
	done
	echo "   (the stage calls themselves, their subtransactions and the executor's C code are"
	echo "   not statements; an inlined SQL stage never shows up here)"
else
	echo "   failed: $(last_error)"
fi

# ---------------------------------------------------------------- 3. retry_failed
echo
echo "3. batch.retry_failed(): $(num "$failed") failed items in a $(num "$big")-item batch vs in a"
echo "   $(num "$failed")-item batch; each repetition fails the items again (UPDATE), runs VACUUM"
echo "   ANALYZE batch.items, then times one call inside the server (commit excluded)"
echo
retry_ok=
if res=$(qf retry_setup.sql -v big="$big" -v small="$failed" -v failed="$failed"); then
	IFS='|' read -r big_bid small_bid big_submit_s small_submit_s big_failed small_failed <<<"$res"
	printf '   submit: %s items in %.1f s (%s items/s); %s items in %.2f s\n' "$(num "$big")" \
		"$big_submit_s" "$(num "$(rate "$big" "$big_submit_s")")" "$(num "$failed")" "$small_submit_s"
	big_ms="" small_ms="" counts=""
	for rep in $(seq 1 "$reps"); do
		# alternate which batch goes first
		if [ $((rep % 2)) = 1 ]; then order="$big_bid $small_bid"; else order="$small_bid $big_bid"; fi
		for bid in $order; do
			res=$(qf retry_rep.sql -v bid="$bid") || { echo "   failed: $(last_error)"; break 2; }
			IFS='|' read -r ms requeued <<<"$res"
			counts="$counts $requeued"
			if [ "$bid" = "$big_bid" ]; then big_ms="$big_ms $ms"; else small_ms="$small_ms $ms"; fi
		done
	done
	if [ -n "$small_ms" ] && [ -n "$big_ms" ]; then
		retry_ok=1
		bm=$(median <<<"$big_ms")
		sm=$(median <<<"$small_ms")
		printf '\n   %-32s %10s %8s %12s %18s\n' "batch" "items" "failed" "median ms" "min .. max ms"
		printf '   %-32s %10s %8s %12.1f %18s\n' "big" "$(num "$big")" "$(num "$big_failed")" "$bm" "$(minmax <<<"$big_ms")"
		printf '   %-32s %10s %8s %12.1f %18s\n' "small" "$(num "$failed")" "$(num "$small_failed")" "$sm" "$(minmax <<<"$small_ms")"
		printf '   ratio big/small: %s   (target <= 3; %s repetitions each)\n' \
			"$(awk -v b="$bm" -v s="$sm" 'BEGIN { printf "%.2f", b / s }')" "$reps"
		if tr ' ' '\n' <<<"$counts" | grep -v '^$' | grep -qv "^$failed\$"; then
			echo "   !! re-queued counts were not all $failed:$counts"
		fi
	fi
else
	echo "   setup failed: $(last_error)"
fi

# ---------------------------------------------------------------- 4. progress
echo
echo "4. SELECT * FROM batch.progress WHERE name = 'retry_big' ($(num "$big") items), $progress_runs runs"
echo "   each way, timed inside the server"
echo
if [ -n "$retry_ok" ] && res=$(qf progress.sql -v name=retry_big -v runs="$progress_runs"); then
	IFS='|' read -r a_med a_p90 c_med c_p90 total <<<"$res"
	printf '   %-44s %10s %10s\n' "" "median ms" "p90 ms"
	printf '   %-44s %10.3f %10.3f\n' "ad hoc (parsed and planned each time)" "$a_med" "$a_p90"
	printf '   %-44s %10.3f %10.3f\n' "cached plan (prepared statement)" "$c_med" "$c_p90"
	printf '   target: <= 1 ms   (the view reported total = %s)\n' "$(num "$total")"
else
	echo "   skipped or failed: $(last_error)"
fi

echo
rule
echo "done in $(($(date +%s) - started)) s; load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
