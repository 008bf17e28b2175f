#!/usr/bin/env bash
# bench/serve.sh - the web page (pgbatch serve) under a long stream of page
# loads: prints figures, asserts nothing about speed.
#
#   bash bench/serve.sh        (Debian 12, as root; about a minute)
#
# On a throwaway PostgreSQL 15 cluster (passwords checked over 127.0.0.1) a
# role signs in to pgbatch serve; its batch has $PGB_SERVE_ITEMS items (200),
# one in ten failed, so the batch page shows the bar, the errors, a review
# queue of payloads and the log.  curl then loads the batch page
# $PGB_SERVE_PAGES times (10,000) over one kept-alive connection, and the
# script prints the time per page and the resident memory (RSS) of pgbatch
# serve after each fifth of them: it must stay flat.
#
# Knobs (environment): PGB_SERVE_ITEMS, PGB_SERVE_PAGES, PGB_SERVE_PORT
# (54360; the page listens on the next port), PGB_KEEP=1 to keep the work
# dir.  Each server is stopped on exit by its own pid (the cluster through
# pg_ctl).
set -euo pipefail
. "$(dirname "$0")/../test/lib.sh"
. "$(dirname "$0")/lib.sh"

port=${PGB_SERVE_PORT:-54360}
web_port=$((port + 1))
items=${PGB_SERVE_ITEMS:-200}
pages=${PGB_SERVE_PAGES:-10000}

work=$(mktemp -d /tmp/pgbatch-serve-bench.XXXXXX)
chown postgres: "$work"
cluster="$work/cluster"
serve_pid=
web_pid=

cleanup() {
	local status=$?
	# pgbatch serve itself (runuser's child), then runuser
	if [ -n "$web_pid" ]; then
		kill -TERM "$web_pid" 2>/dev/null || true
		for _ in $(seq 1 50); do
			kill -0 "$web_pid" 2>/dev/null || break
			sleep 0.1
		done
	fi
	stop_pid "$serve_pid"
	pgb_cluster_stop "$cluster"
	if [ "${PGB_KEEP:-}" = "" ]; then rm -rf "$work"; else echo "kept $work"; fi
	exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! { pgb_install_deps && pgb_apt_install curl iproute2 procps bc && pgb_build_install; } >"$work/setup.log" 2>&1; then
	echo "setup failed; the end of $work/setup.log:" >&2
	tail -n 40 "$work/setup.log" >&2
	exit 1
fi

pgb_cluster_start "$cluster" "$port"
printf 'local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n' >"$cluster/data/pg_hba.conf"
pgb_as_postgres "$PG_BIN/pg_ctl" -D "$cluster/data" reload >/dev/null
q() { pgb_psql "$cluster" "$port" -d postgres -qAt "$@" </dev/null; }
pgb_psql "$cluster" "$port" -d postgres -qAt -v ON_ERROR_STOP=1 -f - <<EOF >/dev/null
CREATE EXTENSION pgbatch;
CREATE ROLE bench_ops LOGIN PASSWORD 'bench' IN ROLE pgbatch_operator;
CREATE SCHEMA app;
GRANT USAGE ON SCHEMA app TO pgbatch_operator;
CREATE FUNCTION app.step(p jsonb, o jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
	IF p ? 'bad' THEN
		RAISE EXCEPTION 'row % is bad', p->>'n' USING ERRCODE = 'data_exception';
	END IF;
	RETURN jsonb_build_object('done', p->'n');
END \$\$;
SELECT batch.create_pipeline('bench', '[{"name": "step", "sql": "app.step"}]', retry => '{"max_retries": 0}');
SET ROLE bench_ops;
SELECT batch.submit('bench', (SELECT jsonb_agg(CASE WHEN g % 10 = 0
		THEN jsonb_build_object('n', g, 'bad', true, 'topic', 'Topic ' || g)
		ELSE jsonb_build_object('n', g, 'topic', 'Topic ' || g) END) FROM generate_series(1, $items) g),
	name => 'bench_page');
SELECT count(*) FROM batch.run('bench_page');
EOF
batch=$(q -c "SELECT id FROM batch.batches WHERE name = 'bench_page'")

pgb_as_postgres "$PG_BIN/pgbatch" -h 127.0.0.1 -p "$port" -d postgres serve --web-port "$web_port" \
	>"$work/serve.out" 2>&1 &
serve_pid=$!
for _ in $(seq 1 100); do
	grep -q listening "$work/serve.out" 2>/dev/null && break
	sleep 0.1
done
# serve runs as postgres under runuser: its own process is the one listening
web_pid=$(ss -ltnpH "sport = :$web_port" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)
base="http://127.0.0.1:$web_port"
jar="$work/cookies"
token=$(curl -s -c "$jar" "$base/" | sed -n 's/.*name="csrf" value="\([0-9a-f]*\)".*/\1/p')
curl -s -b "$jar" -c "$jar" -o /dev/null --data "csrf=$token&user=bench_ops&password=bench" "$base/signin"
bytes=$(curl -s -b "$jar" "$base/batch?id=$batch" | wc -c)
rss() { ps -o rss= -p "$web_pid" | tr -d ' '; }

echo "pgbatch serve benchmark          $(date -u '+%Y-%m-%d %H:%M UTC')"
printf '%s\n' "--------------------------------------------------------------------------------"
code=$(git -C "$PGB_TOP" rev-parse --short HEAD 2>/dev/null || echo "not a git checkout")
printf '%-13s %s\n' "code" "$code"
printf '%-13s %s CPUs; load average %s at start\n' "machine" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-13s %s items, %s failed; the batch page is %s bytes\n' "batch" "$items" \
	"$(q -c "SELECT failed FROM batch.progress WHERE id = $batch")" "$bytes"
echo
printf '%-12s %12s %14s %12s\n' "pages" "ms / page" "status 200" "RSS (kB)"
printf '%-12s %12s %14s %12s\n' "0" "" "" "$(rss)"
step=$((pages / 5))
done_pages=0
for _ in 1 2 3 4 5; do
	t0=$(date +%s%N)
	ok=$(curl -s -b "$jar" -o /dev/null -w '%{http_code}\n' "$base/batch?id=$batch&n=[1-$step]" | grep -c '^200$' || true)
	t1=$(date +%s%N)
	done_pages=$((done_pages + step))
	printf '%-12s %12.2f %14s %12s\n' "$done_pages" "$(echo "($t1 - $t0) / 1000000 / $step" | bc -l)" "$ok" "$(rss)"
done
