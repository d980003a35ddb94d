#!/usr/bin/env bash
# drain_by_hand.sh: drain COUNT past-due callbacks through the real worker and beat, by hand.
# An independent check of `python -m tests.perf --only drain`: it shares no code with the suite,
# only the public commands (callbacks, celery as in the Procfile, psql) and a stdlib stand-in.
# Usage: bash tests/perf/drain_by_hand.sh [COUNT=20000] [DELAY_SECONDS=0.2]
set -euo pipefail

COUNT=${1:-20000}
DELAY=${2:-0.2}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
if [[ -z ${VIRTUAL_ENV:-} && -f .venv/bin/activate ]]; then
  # shellcheck source=/dev/null
  . .venv/bin/activate
fi

DB="drain_by_hand_$(date +%s)_$$"
TMP=$(mktemp -d)
PIDS=()
pg() { psql -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres "$@"; }

stop() {  # SIGTERM each given pid, then wait for it
  local pid
  for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "$@"; do wait "$pid" 2>/dev/null || true; done
}
cleanup() {
  ((${#PIDS[@]})) && stop "${PIDS[@]}"
  pg -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$TMP"
}
trap cleanup EXIT

# The worker reads only its environment; any other setting (WORKER_*, POLL_*) passes through.
export DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1:5432/$DB"
export BROKER_URL="redis://127.0.0.1:6379/9" SPEKO_API_KEY="drain-by-hand" LOG_LEVEL=WARNING
export CALLING_WINDOW_START=00:00 CALLING_WINDOW_END=24:00

pg -d postgres -c "CREATE DATABASE $DB"
callbacks migrate >"$TMP/migrate.log" 2>&1 || { cat "$TMP/migrate.log"; exit 1; }
AT=$(date -u -d '10 minutes ago' +%Y-%m-%dT%H:%M:%SZ)
awk -v n="$COUNT" -v at="$AT" 'BEGIN { for (i = 1; i <= n; i++) printf \
  "{\"organization_id\": \"org_%d\", \"to_number\": \"+1201555%04d\", \"scheduled_at\": \"%s\"}\n",
  i % 10, i % 10000, at }' >"$TMP/callbacks.jsonl"
callbacks schedule --file "$TMP/callbacks.jsonl" >/dev/null
redis-cli -n 9 flushdb >/dev/null

# The provider stand-in: answers each dial after DELAY s; on SIGTERM writes what it received.
python3 - "$DELAY" "$TMP/port" "$TMP/provider" <<'PY' &
import http.server, json, os, signal, sys, threading, time

delay, port_file, stats_file = float(sys.argv[1]), sys.argv[2], sys.argv[3]
lock, keys, count = threading.Lock(), set(), [0]

class Dial(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path != "/v1/sessions/phone":
            return self.answer(404, {"error": "not found"})
        time.sleep(delay)
        with lock:
            count[0] += 1; n = count[0]; keys.add(self.headers.get("Idempotency-Key"))
        self.answer(200, {"sessionId": f"sess_{n}"})
    def answer(self, status, doc):
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args): pass

class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 4096

server = Server(("127.0.0.1", 0), Dial)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
with open(port_file + ".tmp", "w") as f: f.write(str(server.server_address[1]))
os.replace(port_file + ".tmp", port_file)
try:
    server.serve_forever()
finally:
    with lock, open(stats_file, "w") as f:
        f.write(f"{count[0]} {len(keys)}\n")
PY
STAND_IN=$! && PIDS+=("$STAND_IN")
for _ in $(seq 100); do [[ -s $TMP/port ]] && break; sleep 0.1; done
[[ -s $TMP/port ]] || { echo "stand-in did not start" >&2; exit 1; }
export SPEKO_API_URL="http://127.0.0.1:$(cat "$TMP/port")"

celery -A worker worker >"$TMP/worker.log" 2>&1 & WORKER=$!
celery -A worker beat >"$TMP/beat.log" 2>&1 & BEAT=$!
PIDS+=("$WORKER" "$BEAT")

DEADLINE=$((SECONDS + 60 + COUNT / 20))
while :; do
  LEFT=$(pg -d "$DB" -c "SELECT count(*) FROM callbacks WHERE status IN ('scheduled', 'dispatching')")
  ((LEFT == 0)) && break
  if ((SECONDS > DEADLINE)) || ! kill -0 "$WORKER" "$BEAT" 2>/dev/null; then
    echo "gave up with $LEFT callbacks left (timeout or a process died); worker log:" >&2
    tail -n 40 "$TMP/worker.log" >&2
    exit 1
  fi
  sleep 0.5
done
stop "$WORKER" "$BEAT" && stop "$STAND_IN" && PIDS=()
read -r REQUESTS KEYS <"$TMP/provider"

echo "drain_by_hand: $COUNT callbacks, provider delay ${DELAY}s"
echo "by status:"
pg -d "$DB" -F ' ' -c "SELECT '  ' || status, count(*) FROM callbacks GROUP BY status ORDER BY status"
pg -d "$DB" -c "
  SELECT format('drain: %s dispatched in %s s = %s callbacks/s (first claim -> last dispatched_at)',
                n, round(s::numeric, 3), round((n / NULLIF(s, 0))::numeric, 1))
  FROM (SELECT count(*) FILTER (WHERE status = 'dispatched') AS n,
               extract(epoch FROM max(dispatched_at) - (
                   SELECT min(at) FROM callback_events
                   WHERE from_status = 'scheduled' AND to_status = 'dispatching')) AS s
        FROM callbacks) AS d"
echo "stand-in: $REQUESTS requests, $KEYS distinct Idempotency-Keys (expected $COUNT each)"
((REQUESTS == COUNT && KEYS == COUNT)) || { echo "NOT exactly once" >&2; exit 1; }
