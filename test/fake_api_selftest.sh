#!/usr/bin/env bash
# test/fake_api_selftest.sh - checks test/fake_api.py with the curl command line.
#
# Starts the fake API on a free port of 127.0.0.1, checks a set of its
# behaviours, stops it by its own pid and exits non-zero if any check failed.
# Needs bash, curl and python3 (for the server, and to read JSON answers).
# Checks pass their conditions to eval in single quotes, evaluated by check():
# shellcheck disable=SC2016,SC2034
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
T=$(mktemp -d "${TMPDIR:-/tmp}/fake_api_selftest.XXXXXX")
PID=
fails=0
n=0

cleanup() {
	if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
		kill -TERM "$PID" 2>/dev/null
	fi
	rm -rf "$T"
}
trap cleanup EXIT

check() { # check DESCRIPTION COMMAND...
	local desc=$1
	shift
	n=$((n + 1))
	if "$@"; then
		echo "ok $n - $desc"
	else
		echo "not ok $n - $desc"
		fails=$((fails + 1))
	fi
}

# json EXPR: evaluates a python expression over the JSON document d read from stdin.
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

# req [curl args...]: one request; sets CODE (HTTP status), RC (curl exit code);
# the body is in $T/body and the response headers in $T/hdr.
req() {
	CODE=$(curl -s -m 10 -o "$T/body" -D "$T/hdr" -w '%{http_code}' "$@")
	RC=$?
}
body() { cat "$T/body"; }
has() { grep -qF -- "$1" "$T/body"; }
hdr() { grep -qiE -- "$1" "$T/hdr"; }

python3 "$HERE/fake_api.py" --port 0 --portfile "$T/port" --pidfile "$T/pid" \
	--max-hang 5 --log "$T/log" >"$T/stdout" 2>"$T/stderr" &
for _ in $(seq 1 100); do
	[ -s "$T/port" ] && break
	sleep 0.05
done
if [ ! -s "$T/port" ]; then
	echo "fake_api did not start"; cat "$T/stderr"; exit 1
fi
PORT=$(cat "$T/port")
PID=$(cat "$T/pid")
U="http://127.0.0.1:$PORT"
echo "# $(cat "$T/stdout") (pid $PID)"

# -- normal answers
req -X POST -H 'Content-Type: application/json' -d '{"a":1}' "$U/v1/echo"
check "POST echoes path, method and JSON request" \
	eval '[ "$CODE" = 200 ] && has "\"ok\":true" && has "\"path\":\"/v1/echo\"" &&
		has "\"method\":\"POST\"" && has "\"request\":{\"a\":1}" && hdr "^Content-Length: "'
for m in GET PUT PATCH DELETE; do
	req -X $m "$U/any/path"
	check "$m answers 200" eval '[ "$CODE" = 200 ] && has "\"method\":\"$m\""'
done
conns=$(curl -s -m 10 -o /dev/null -o /dev/null -w '%{num_connects} ' "$U/a" "$U/b")
check "keep-alive: second request reuses the connection ($conns)" [ "$conns" = "1 0 " ]

# -- status faults and Retry-After
req -H 'X-Fake-Fault: 429:ra=2' "$U/v1/x"
check "429:ra=2 gives 429 with Retry-After: 2" eval '[ "$CODE" = 429 ] && hdr "^Retry-After: 2\s*$"'
req -H 'X-Fake-Fault: 503:ra=date' "$U/v1/x"
check "503:ra=date gives an HTTP-date Retry-After" eval '[ "$CODE" = 503 ] &&
	hdr "^Retry-After: [A-Z][a-z]{2}, [0-9]{2} [A-Z][a-z]{2} [0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT"'
for c in 400 401 404 500 502 504; do
	req -H "X-Fake-Fault: $c" "$U/v1/x"
	check "fault $c" [ "$CODE" = $c ]
done

codes=
for _ in 1 2 3; do
	req -X POST -H 'Idempotency-Key: item-1' -H 'X-Fake-Fault: 429x1' -d '{}' "$U/v1/draft"
	codes="$codes$CODE "
done
check "429x1 with one Idempotency-Key: 429 then 200 ($codes)" [ "$codes" = "429 200 200 " ]
check "n counts requests of the key" has '"n":3'

codes=
for _ in 1 2; do req -X POST -d '{"fault":"503x1","topic":"b"}' "$U/v1/draft"; codes="$codes$CODE "; done
check "body fault 503x1 without a key (path+body): 503 then 200 ($codes)" [ "$codes" = "503 200 " ]

codes=
for _ in 1 2 3; do
	req -X POST -H 'Idempotency-Key: item-2' -d '{"payload":{"fault":"500:ra=1x2"}}' "$U/v1/draft"
	codes="$codes$CODE "
done
check "payload.fault 500:ra=1x2: 500 500 200 ($codes)" [ "$codes" = "500 500 200 " ]

chat='{"model":"m1","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Write about cats [fault:429x1]"}]}'
codes=
for _ in 1 2; do
	req -X POST -H 'Content-Type: application/json' -d "$chat" "$U/v1/chat/completions"
	codes="$codes$CODE "
done
check "chat [fault:429x1] in a message: 429 then 200 ($codes)" [ "$codes" = "429 200 " ]
check "chat completion shape" eval '[ "$(body | json "d[\"object\"], d[\"model\"], d[\"choices\"][0][\"message\"][\"role\"], d[\"usage\"][\"total_tokens\"] == d[\"usage\"][\"prompt_tokens\"] + d[\"usage\"][\"completion_tokens\"]")" = "chat.completion m1 assistant True" ]'
check "chat content derives from the last user message" has 'Write about cats'

# -- connection faults, bad bodies, big bodies, hangs
req -H 'X-Fake-Fault: reset' "$U/v1/x"
check "reset: curl sees a connection reset (rc $RC, want 56)" [ "$RC" = 56 ]
req -H 'X-Fake-Fault: close' "$U/v1/x"
check "close: curl sees an empty reply (rc $RC, want 52)" [ "$RC" = 52 ]
req -H 'X-Fake-Fault: badjson' "$U/v1/x"
check "badjson: 200 with a body that is not JSON" \
	eval '[ "$CODE" = 200 ] && ! body | python3 -c "import json,sys; json.load(sys.stdin)" 2>/dev/null'
size=$(curl -s -m 10 -o /dev/null -w '%{size_download}' -H 'X-Fake-Fault: big=300000' "$U/v1/x")
check "big=300000 sends 300000 bytes ($size)" [ "$size" = 300000 ]
req -H 'X-Fake-Fault: bogus' "$U/v1/x"
check "an unknown fault spec is a 400" eval '[ "$CODE" = 400 ] && has fake_api_bad_fault_spec'
s=$(date +%s%N)
req -m 1 -H 'X-Fake-Fault: hang' "$U/v1/x"
e=$(date +%s%N)
check "hang: the client times out (rc $RC, want 28)" eval '[ "$RC" = 28 ] && [ $(( (e - s) / 1000000 )) -lt 3000 ]'
sleep 0.3
check "the abandoned hang is no longer in flight" eval '[ "$(curl -s "$U/_stats?keys=0" | json "d[\"in_flight\"], d[\"outcomes\"].get(\"hang_client_gone\")")" = "0 1" ]'

# -- stats: max in-flight, per-key arrivals, request log
curl -s "$U/_control/reset" >/dev/null
pids=
for i in 1 2 3 4 5; do
	curl -s -m 10 -o /dev/null -H 'X-Fake-Fault: slow=800' "$U/v1/slow/$i" &
	pids="$pids $!"
done
# shellcheck disable=SC2086
wait $pids
st=$(curl -s "$U/_stats")
check "5 parallel slow requests: max_in_flight 5, total 5, in_flight 0" \
	[ "$(echo "$st" | json 'd["max_in_flight"], d["total"], d["in_flight"], d["status"]')" = "5 5 0 {'200': 5}" ]

req -X POST -H 'Idempotency-Key: k-ra' -H 'X-Fake-Fault: 429:ra=1x1' -d '{}' "$U/v1/x"
sleep 1.1
req -X POST -H 'Idempotency-Key: k-ra' -H 'Authorization: Bearer s3cret' -H 'X-Fake-Fault: 429:ra=1x1' -d '{}' "$U/v1/x"
kr=$(curl -s "$U/_stats?key=k-ra" | json '[r[1] for r in d["keys"]["k-ra"]["requests"]], d["keys"]["k-ra"]["requests"][1][0] - d["keys"]["k-ra"]["requests"][0][2] >= 1.0')
check "per-key arrivals and statuses ($kr)" [ "$kr" = "[429, 200] True" ]
page=$(curl -s "$U/_stats/requests?since=5&limit=1")
check "request log paging" [ "$(echo "$page" | json 'd["next"], len(d["requests"]), d["requests"][0]["key"], d["more"]')" = "6 1 k-ra True" ]
page=$(curl -s "$U/_stats/requests?since=6")
check "request log records that Authorization was sent, never its value" \
	eval '[ "$(echo "$page" | json "d[\"requests\"][0][\"auth\"], d[\"next\"], d[\"more\"]")" = "True 7 False" ] && ! echo "$page" | grep -q s3cret'

# -- control API rules
curl -s -X POST -d '{"rules":[{"match":{"path_prefix":"/v1/draft","key_contains":"bad"},"fault":"503x1"}]}' \
	"$U/_control/rules" >/dev/null
codes=
for k in item-bad-1 item-bad-1 item-good; do
	req -X POST -H "Idempotency-Key: $k" -d '{}' "$U/v1/draft"
	codes="$codes$CODE "
done
req -X POST -H "Idempotency-Key: item-bad-2" -d '{}' "$U/v1/other"
codes="$codes$CODE "
check "rule by path_prefix and key_contains ($codes)" [ "$codes" = "503 200 200 200 " ]

prob() {
	curl -s "$U/_control/reset" >/dev/null
	curl -s -X POST -d '{"rules":[{"match":{"path_prefix":"/v1/draft"},"fault":"503","probability":0.3,"seed":7}]}' \
		"$U/_control/rules" >/dev/null
	local i out=
	for i in $(seq 1 100); do
		out="$out$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Idempotency-Key: p-$i" -d '{}' "$U/v1/draft") "
	done
	echo "$out"
}
p1=$(prob)
p2=$(prob)
c=$(echo "$p1" | tr ' ' '\n' | grep -c 503)
check "probability 0.3: $c of 100 keys fail, the same ones on a rerun" \
	eval '[ "$p1" = "$p2" ] && [ "$c" -ge 15 ] && [ "$c" -le 45 ]'

curl -s -X POST -d '{"rules":[],"latency_ms":300}' "$U/_control/rules" >/dev/null
tt=$(curl -s -o /dev/null -w '%{time_total}' "$U/v1/x")
check "latency_ms 300 delays answers ($tt s)" python3 -c "import sys; sys.exit(not 0.29 <= $tt < 2)"
curl -s "$U/_control/reset" >/dev/null
tt=$(curl -s -o /dev/null -w '%{time_total}' "$U/v1/x")
check "reset restores the command-line latency ($tt s)" python3 -c "import sys; sys.exit(not $tt < 0.25)"

# -- stop by pid
kill -TERM "$PID"
for _ in $(seq 1 50); do
	kill -0 "$PID" 2>/dev/null || break
	sleep 0.1
done
check "SIGTERM stops it within 5 s, removing its pidfile" eval '! kill -0 "$PID" 2>/dev/null && [ ! -e "$T/pid" ]'
check "nothing on stderr" eval '[ ! -s "$T/stderr" ] || { cat "$T/stderr"; false; }'

echo "# $((n - fails))/$n checks passed"
[ "$fails" = 0 ]
