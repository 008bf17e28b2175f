# demo/lib.sh - the set-up the demos share (demo/run.sh, demo/triage.sh),
# sourced by them once they have set $port, $api_latency_ms and $PGB_TOP
# (test/lib.sh).  Installs the build dependencies, builds and installs the
# extension (output in the work dir's setup.log); starts the fake LLM API
# (test/fake_api.py, 127.0.0.1, a free port) and a PostgreSQL 15 cluster with
# pgbatch preloaded (2 executors) on 127.0.0.1:$port, both in a mktemp dir,
# and creates the database pgbatch_demo; on exit (also when interrupted)
# stops both by their own pids and removes the dir (PGB_KEEP=1 keeps it).
# Defines heading, die, demo_psql, tidy, now_ms and pgbatch_cli.
# shellcheck shell=bash disable=SC2034,SC2154

if [ -t 1 ]; then
	bold=$'\e[1m' dim=$'\e[2m' red=$'\e[31m' plain=$'\e[0m'
else
	bold='' dim='' red='' plain=''
fi

heading() {
	printf '\n%s== %s ==%s\n\n' "$bold" "$*" "$plain"
}

die() {
	printf '\n%sdemo FAILED: %s%s\n' "$red$bold" "$*" "$plain" >&2
	exit 1
}

work=$(mktemp -d /tmp/pgbatch-demo.XXXXXX)
setup_done=
api_child=   # the fake API as started ($!)
api_pid=     # its pid, as it wrote it in its pidfile
api_port=

# Stops the fake API by its own pid: SIGTERM, SIGKILL after 5 s.
stop_api() {
	local pid=${api_pid:-$api_child}
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 1 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	if [ -n "$api_child" ]; then
		wait "$api_child" 2>/dev/null || true
	fi
	api_child=""
	api_pid=""
}

# keep the terminal on fds 3 and 4: an error inside a redirected block runs
# the exit trap with that block's redirections still in place
exec 3>&1 4>&2
cleanup() {
	local status=$?
	trap '' INT TERM    # a second ^C must not cut the cleanup short
	exec 1>&3 2>&4
	if [ -z "$setup_done" ]; then
		echo "setup failed; the end of $work/setup.log:" >&2
		tail -n 40 "$work/setup.log" >&2 2>/dev/null || true
		if [ -f "$work/cluster/server.log" ]; then
			echo "and of the server log (is port $port free? set PGB_DEMO_PORT to use another):" >&2
			tail -n 20 "$work/cluster/server.log" >&2
		fi
	fi
	stop_api
	pgb_cluster_stop "$work/cluster" || true
	if [ -n "${PGB_KEEP:-}" ]; then
		echo "kept $work (server log: $work/cluster/server.log, API request log: $work/api.log)"
	else
		rm -rf "$work"
		if [ "$status" != 0 ] && [ "$status" != 130 ]; then
			echo "(set PGB_KEEP=1 to keep the cluster and the logs of a run)" >&2
		fi
	fi
	exit "$status"
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

echo "Starting the fake LLM API (test/fake_api.py, ${api_latency_ms} ms per answer) ..."
python3 "$PGB_TOP/test/fake_api.py" --port 0 --portfile "$work/api.port" \
	--pidfile "$work/api.pid" --latency-ms "$api_latency_ms" --log "$work/api.log" \
	>>"$work/setup.log" 2>&1 &
api_child=$!
for _ in $(seq 1 100); do
	[ -s "$work/api.port" ] && break
	kill -0 "$api_child" 2>/dev/null || break
	sleep 0.1
done
[ -s "$work/api.port" ] || die "the fake API did not start (see $work/setup.log)"
api_pid=$(cat "$work/api.pid")
api_port=$(cat "$work/api.port")
api_url="http://127.0.0.1:$api_port"
echo "  listening on $api_url (pid $api_pid)"

echo "Starting a throwaway PostgreSQL 15 cluster on 127.0.0.1:$port, pgbatch preloaded ..."
pgb_cluster_start "$work/cluster" "$port" \
	shared_preload_libraries=pgbatch pgbatch.workers=2 pgbatch.poll_interval=1s \
	>>"$work/setup.log" 2>&1
setup_done=1

# psql against the demo database: quiet, no psqlrc, stop on the first error
demo_psql() {
	pgb_psql "$work/cluster" "$port" -d pgbatch_demo -q -P footer=off "$@"
}
# NOTICEs without psql's file:line prefix
tidy() {
	sed -E 's/^psql:[^ ]+:[0-9]+: (NOTICE|INFO|WARNING): /\1: /'
}
now_ms() {
	local t=${EPOCHREALTIME//[^0-9]/}
	echo $((t / 1000))
}
pgb_psql "$work/cluster" "$port" -q -c 'CREATE DATABASE pgbatch_demo'

# the operators' command, as the postgres user, against the demo database
pgbatch_cli() {
	pgb_as_postgres "$PG_BIN/pgbatch" -h "$work/cluster" -p "$port" -U postgres -d pgbatch_demo "$@"
}
