#!/usr/bin/env bash
# test/lib.sh - shared shell helpers for the test, demo and bench scripts.
#
# Source it; it defines:
#   pgb_apt_install PKG.. apt-get the packages that are missing (Debian 12, as root)
#   pgb_install_deps      apt-get the build and test dependencies
#   pgb_install_browser   apt-get Chromium and ChromeDriver (the web page's test)
#   pgb_build_install     build pgbatch and install it into PostgreSQL 15
#   pgb_cluster_start DIR PORT [extra postgres -c settings...]
#                         initdb (if needed) and start a throwaway cluster owned by
#                         the postgres user, listening on 127.0.0.1:PORT and a unix
#                         socket in DIR only
#   pgb_cluster_stop DIR  stop that cluster (pg_ctl, through its own postmaster.pid)
#   pgb_psql DIR PORT ... psql against it as the postgres superuser
#   pgb_fetch_exporter DIR
#                         download Debian's prometheus-postgres-exporter package and
#                         unpack it into DIR without installing it; prints the path
#                         of its binary
set -euo pipefail

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PGB_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

pgb_as_postgres() {
	if [ "$(id -un)" = postgres ]; then "$@"; else runuser -u postgres -- "$@"; fi
}

# pgb_apt_install PKG...: installs the packages that are missing (Debian, as
# root), without letting them start services (a policy-rc.d for the time)
pgb_apt_install() {
	local policy= status=0
	if dpkg -s "$@" >/dev/null 2>&1; then
		return 0
	fi
	if [ "$(id -u)" != 0 ]; then
		echo "missing packages ($*); run as root to install them" >&2
		return 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod +x /usr/sbin/policy-rc.d
		policy=1
	fi
	{ apt-get update -q && apt-get install -y -q --no-install-recommends "$@"; } || status=$?
	[ -z "$policy" ] || rm -f /usr/sbin/policy-rc.d
	return $status
}

pgb_install_deps() {
	pgb_apt_install build-essential postgresql-15 postgresql-server-dev-15 postgresql-15-cron \
		libcurl4-openssl-dev libmicrohttpd-dev libipc-run-perl python3 python3-h2 curl tmux nginx-light \
		openssl pgbouncer
}

# the browser the web page's test drives (test/t/029_serve.pl): the tests
# need it, the demos do not
pgb_install_browser() {
	pgb_apt_install chromium chromium-driver
}

pgb_build_install() {
	make -C "$PGB_TOP" -s PG_CONFIG="$PG_BIN/pg_config"
	make -C "$PGB_TOP" -s PG_CONFIG="$PG_BIN/pg_config" install
}

pgb_cluster_start() {
	local dir=$1 port=$2
	shift 2
	mkdir -p "$dir"
	chown postgres: "$dir" 2>/dev/null || true
	if [ ! -f "$dir/data/PG_VERSION" ]; then
		pgb_as_postgres "$PG_BIN/initdb" -D "$dir/data" -A trust -U postgres \
			--no-sync >"$dir/initdb.log" 2>&1
	fi
	local opts="-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=on"
	local s
	for s in "$@"; do opts="$opts -c $s"; done
	pgb_as_postgres "$PG_BIN/pg_ctl" -D "$dir/data" -o "$opts" -l "$dir/server.log" -w start >/dev/null
}

pgb_cluster_stop() {
	local dir=$1
	if [ -f "$dir/data/postmaster.pid" ]; then
		pgb_as_postgres "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
	fi
}

pgb_psql() {
	local dir=$1 port=$2
	shift 2
	"$PG_BIN/psql" -X -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -U postgres "$@"
}

# pgb_fetch_exporter DIR: gets the prometheus-postgres-exporter binary for the
# exporter test without installing the package (its postinst would start a
# daemon listening on every interface): `apt-get download` into a temporary
# directory (after an apt-get update if the package lists do not know it),
# `dpkg -x` into DIR, and prints DIR/usr/bin/prometheus-postgres-exporter.
# Every step checks its status: callers use it as $(pgb_fetch_exporter DIR),
# where set -e does not apply.
pgb_fetch_exporter() {
	local dir=$1 tmp deb status=0
	local bin=$dir/usr/bin/prometheus-postgres-exporter
	if [ ! -x "$bin" ]; then
		tmp=$(mktemp -d) || return 1
		# apt-get download, as root, fetches as the _apt user: let it write here
		chown _apt: "$tmp" 2>/dev/null || true
		if ! (cd "$tmp" && apt-get download -q prometheus-postgres-exporter) >&2; then
			{ apt-get update -q && (cd "$tmp" && apt-get download -q prometheus-postgres-exporter); } >&2 ||
				status=$?
		fi
		for deb in "$tmp"/prometheus-postgres-exporter_*.deb; do break; done
		if [ $status -eq 0 ] && [ -f "$deb" ]; then
			mkdir -p "$dir" && dpkg -x "$deb" "$dir" || status=$?
		else
			status=1
		fi
		rm -rf "$tmp"
	fi
	if [ $status -ne 0 ] || ! "$bin" --version >/dev/null 2>&1; then
		echo "could not get prometheus-postgres-exporter into $dir" >&2
		return 1
	fi
	echo "$bin"
}
