#!/usr/bin/env bash
# demo/triage.sh - the seeds' morning triage, timed: a batch of 500 articles
# ends with 5 failed (3 bad input rows, 2 items whose 429s outlasted their
# retries), and an operator brings it to 500 completed with the pgbatch
# command alone, no SQL.  Prints the commands, their output, and the time to
# resolution: how many commands, and the seconds from the first to the
# batch's completion.
#
#   bash demo/triage.sh       (Debian 12, as root; about 30 s once installed)
#
# The set-up (demo/lib.sh, as for demo/run.sh: the fake LLM API and a
# throwaway cluster with pgbatch preloaded; demo/setup.sql: the endpoint and
# the 4-stage pipeline) and the night's batch are SQL, the application's
# side; the triage is not:
#   1. pgbatch status                 what ran overnight
#   2. pgbatch errors BATCH           what failed, grouped by stage and code
#   3. pgbatch review BATCH           the failed items, with their ids
#   4-6. pgbatch fix ITEM --retry     each bad row, edited and re-queued; the
#                                     "editor" is a script standing for the
#                                     operator's hands (it fixes what the
#                                     review showed: a blank topic, a
#                                     misspelled key, a bare string)
#   7. pgbatch retry BATCH --codes http_429
#   8. pgbatch watch BATCH            until the batch has finished
# The review's ids are read from `pgbatch --json review`, as an operator
# reads them off the screen.  Knobs: PGB_DEMO_PORT (54350),
# PGB_DEMO_API_LATENCY_MS (20), PGB_DEMO_DEADLINE (120 s for each wait),
# PGB_KEEP=1.
set -euo pipefail
# shellcheck source=test/lib.sh
. "$(dirname "$0")/../test/lib.sh"

demo_dir="$PGB_TOP/demo"
port=${PGB_DEMO_PORT:-54350}
api_latency_ms=${PGB_DEMO_API_LATENCY_MS:-20}
deadline_s=${PGB_DEMO_DEADLINE:-120}

# shellcheck source=demo/lib.sh
. "$demo_dir/lib.sh"

heading "The night: 500 articles, 3 bad rows, 2 items rate limited past their retries"
demo_psql -v api_url="http://127.0.0.1:$api_port" -f "$demo_dir/setup.sql" >/dev/null 2>&1 ||
	die "demo/setup.sql failed"
demo_psql 2>&1 <<'SQL' | tidy
SELECT batch.submit('seo_articles',
	jsonb_agg(CASE g
				  WHEN 31 THEN jsonb_build_object('key', 'article-' || g, 'topic', '   ')
				  WHEN 258 THEN jsonb_build_object('key', 'article-' || g, 'tpoic', 'Heat pumps in old houses')
				  WHEN 392 THEN to_jsonb('Sourdough for beginners'::text)
				  WHEN 87 THEN jsonb_build_object('key', 'article-' || g, 'topic', 'Topic ' || g,
												  'fault', jsonb_build_object('seo', '429x4'))
				  WHEN 412 THEN jsonb_build_object('key', 'article-' || g, 'topic', 'Topic ' || g,
												   'fault', jsonb_build_object('draft', '429x4'))
				  ELSE jsonb_build_object('key', 'article-' || g, 'topic', 'Topic ' || g)
			  END ORDER BY g),
	name => 'triage_batch') > 0 AS submitted
FROM generate_series(1, 500) g;
SQL
t0=$(now_ms)
until [ "$(demo_psql -At -c "SELECT pending + running FROM batch.progress WHERE name = 'triage_batch'")" = 0 ]; do
	[ $(($(now_ms) - t0)) -lt $((deadline_s * 1000)) ] || die "the night's batch did not finish within ${deadline_s} s"
	sleep 0.5
done
night=$(demo_psql -At -F ' ' -c "SELECT completed, failed FROM batch.progress WHERE name = 'triage_batch'")
echo "The batch finished the night with $night (completed failed)."
[ "$night" = "495 5" ] || die "expected 495 completed and 5 failed, got $night"

# the operator's hands in the editor: fix what the review showed
editor="$work/editor.py"
cat >"$editor" <<'PY'
import json, sys
path = sys.argv[1]
with open(path) as f:
    p = json.load(f)
if isinstance(p, str):
    p = {"key": "article-392", "topic": p}
if "tpoic" in p:
    p["topic"] = p.pop("tpoic")
if not p.get("topic", "").strip():
    p["topic"] = "Cold email deliverability, step by step"
with open(path, "w") as f:
    json.dump(p, f, indent=4)
PY
chmod 0755 "$editor"
chown postgres: "$work" "$editor"

commands=0
run() {
	commands=$((commands + 1))
	printf '\n%s$ pgbatch %s%s\n' "$bold" "$*" "$plain"
	pgbatch_cli "$@"
}

heading "The triage: the pgbatch command only"
start=$(now_ms)
run status
run errors triage_batch
commands=$((commands + 1))
printf '\n%s$ pgbatch review triage_batch%s\n' "$bold" "$plain"
review=$(pgbatch_cli --json review triage_batch)
pgbatch_cli review triage_batch
mapfile -t bad < <(python3 -c '
import json, sys
for r in json.load(sys.stdin):
    if r["error_code"] == "invalid_input":
        print(r["item_id"])' <<<"$review")
[ "${#bad[@]}" = 3 ] || die "the review shows ${#bad[@]} bad rows, not 3"
for item in "${bad[@]}"; do
	commands=$((commands + 1))
	printf '\n%s$ pgbatch fix %s --retry%s\n' "$bold" "$item" "$plain"
	pgb_as_postgres env EDITOR="python3 $editor" VISUAL= "$PG_BIN/pgbatch" -h "$work/cluster" -p "$port" \
		-U postgres -d pgbatch_demo fix "$item" --retry </dev/null
done
run retry triage_batch --codes http_429
commands=$((commands + 1))
printf '\n%s$ pgbatch watch triage_batch%s\n' "$bold" "$plain"
timeout "$deadline_s" "$PG_BIN/pgbatch" -h "$work/cluster" -p "$port" -U postgres -d pgbatch_demo \
	watch triage_batch </dev/null || die "watch did not see the batch finish within ${deadline_s} s"
end=$(now_ms)

result=$(demo_psql -At -F ' ' -c "SELECT completed, total FROM batch.progress WHERE name = 'triage_batch'")
[ "$result" = "500 500" ] || die "expected 500 of 500 completed, got $result"
elapsed=$(((end - start) / 1000)).$(printf %03d $(((end - start) % 1000)))
heading "Time to resolution"
echo "500 of 500 articles completed: $commands pgbatch commands, ${elapsed} s from the first"
echo "command to the batch's completion (editing by a script: a person adds their reading and"
echo "typing time), no SQL."
