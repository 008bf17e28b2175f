#!/usr/bin/env bash
# bench/lib.sh - what the benchmarks share; source it after test/lib.sh.
#
#   PGB_BENCH_SETTINGS  server settings for this 2-core / 24 GB machine:
#                       memory and checkpoints sized for bulk work, commits
#                       durable (fsync and synchronous_commit stay on), and
#                       1,000,000-item batches submitted in one call

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
