#!/usr/bin/env bash
# Start a local Ray head on 127.0.0.1, submit the Ray Train entry (or, JOB=tune, a Ray Tune
# search) as a Ray job, wait for it, print its final metrics (the search: the trials the Ray
# dashboard's state API lists) and stop the head again (only the head this script started).
#
#   bash distributed/submit_local.sh                                  # defaults below
#   CONFIG=configs/lightgcn_synthetic.yaml NUM_WORKERS=2 bash distributed/submit_local.sh \
#       --trainer.max_epochs 3 --max-failures 1 --fail-at-epoch 1 --fail-rank 1
#   JOB=tune SPACE=configs/spaces/lightgcn.yaml bash distributed/submit_local.sh \
#       --num-samples 4 --max-concurrent-trials 2 --trainer.max_epochs 3
#
# Extra arguments go to `python -m reelgraph.distributed.train` (or `python -m reelgraph.tune`)
# unchanged. KEEP_HEAD=1 leaves the head (and its dashboard) running afterwards. Needs the job server,
# which is part of Ray's dashboard: `pip install 'ray[default]'` (the plain `ray` wheel starts a
# head without it, and `ray job submit` then cannot connect).
set -euo pipefail
cd "$(dirname "$0")/.."

JOB=${JOB:-train}                     # train | tune
CONFIG=${CONFIG:-configs/lightgcn_synthetic.yaml}
SPACE=${SPACE:-configs/spaces/lightgcn.yaml}
NUM_WORKERS=${NUM_WORKERS:-2}
NUM_CPUS=${NUM_CPUS:-$(nproc)}
GCS_PORT=${GCS_PORT:-6390}            # not 6379: leaves a default `ray start` elsewhere alone
DASHBOARD_PORT=${DASHBOARD_PORT:-8265}
STORAGE=${STORAGE:-$PWD/artifacts/ray_results}
CACHE=${CACHE:-$PWD/artifacts/cache}  # absolute: the job runs in a copy of this folder
TEMP_DIR=${TEMP_DIR:-/tmp/ray-reelgraph-$$}
ADDRESS=http://127.0.0.1:$DASHBOARD_PORT

python3 -c "import aiohttp_cors, opencensus" 2>/dev/null || {
  echo "Ray's job server needs ray[default]: pip install 'ray[default]==$(python3 -c 'import ray; print(ray.__version__)')'" >&2
  exit 2
}

# Ray 2.60 turns on token auth for a head when a token exists (~/.ray/auth_token); the job CLI
# sends it only when told to, so say so for both, and make a token if there is none
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-token}
if [ "$RAY_AUTH_MODE" = token ] && [ -z "${RAY_AUTH_TOKEN:-}" ] && [ ! -s "$HOME/.ray/auth_token" ]; then
  ray get-auth-token --generate >/dev/null
fi

mkdir -p "$STORAGE" "$TEMP_DIR"
# --block keeps the head in one foreground process; SIGTERM to it stops every process it started
ray start --head --block --node-ip-address 127.0.0.1 --port "$GCS_PORT" \
  --dashboard-host 127.0.0.1 --dashboard-port "$DASHBOARD_PORT" --num-cpus "$NUM_CPUS" \
  --temp-dir "$TEMP_DIR" --include-dashboard true --disable-usage-stats > "$TEMP_DIR/head.log" 2>&1 &
HEAD_PID=$!
stop_head() { kill -TERM "$HEAD_PID" 2>/dev/null && wait "$HEAD_PID" 2>/dev/null || true; }
[ "${KEEP_HEAD:-0}" = 1 ] || trap stop_head EXIT

# the job server answers once the dashboard is up; probe it with the job CLI itself, which also
# carries the auth token (a bare curl gets 401)
up=0
for _ in $(seq 60); do
  if ray job list --address "$ADDRESS" >/dev/null 2>&1; then up=1; break; fi
  kill -0 "$HEAD_PID" 2>/dev/null || { cat "$TEMP_DIR/head.log" >&2; exit 1; }
  sleep 3
done
[ "$up" = 1 ] || { echo "no job server at $ADDRESS" >&2; tail -30 "$TEMP_DIR/head.log" >&2; exit 1; }
echo "Ray head up: $ADDRESS (pid $HEAD_PID, logs $TEMP_DIR)"

# the job runs in a copy of this folder (gitignored paths such as artifacts/ and runs/ are not
# uploaded), so storage and cache are absolute paths here
LOG="$TEMP_DIR/job.log"
case "$JOB" in
  train) ENTRY=(python -m reelgraph.distributed.train --config "$CONFIG" --num-workers "$NUM_WORKERS"
                --storage-path "$STORAGE") ;;
  tune)  ENTRY=(python -m reelgraph.tune --config "$CONFIG" --space "$SPACE"
                --storage-path "$STORAGE/tune") ;;
  *) echo "JOB=$JOB: train or tune" >&2; exit 2 ;;
esac
set +e
ray job submit --address "$ADDRESS" --working-dir . -- \
  "${ENTRY[@]}" --data.cache_dir "$CACHE" "$@" 2>&1 | tee "$LOG"
STATUS=${PIPESTATUS[0]}
set -e

echo
echo "job exit status: $STATUS"
if [ "$JOB" = tune ]; then
  # the dashboard's state API (what its Actors page shows): one trial actor per Tune trial
  ray list actors --address "$ADDRESS" --detail --format json --limit 10000 > "$TEMP_DIR/actors.json"
  python3 - "$TEMP_DIR/actors.json" <<'PY'
import collections, json, sys
actors = json.load(open(sys.argv[1]))
kinds = collections.Counter(a["class_name"] for a in actors)
trials = [a for a in actors if a["class_name"] == "ImplicitFunc"]
print("dashboard actors:", dict(kinds))
for a in trials:
    print(f"  trial actor {a['actor_id'][:12]} {a['state']} pid {a.get('pid')}")
PY
  grep -E '^best trial|^  [a-z_.]+: ' "$LOG" | tail -20 || true
  exit "$STATUS"
fi
grep '^FINAL ' "$LOG" | tail -1 | sed 's/^FINAL //' | python3 -c '
import json, sys
line = sys.stdin.read().strip()
if not line:
    sys.exit("no FINAL line in the job log")
final = json.loads(line)
m = final["metrics"] or {}
print("run folder:", final["path"])
print("checkpoint:", final["checkpoint"])
for k in sorted(m):
    if k.startswith("val/") or k in ("epoch", "step", "train/loss_epoch"):
        print(f"  {k:22s} {m[k]}")
'
exit "$STATUS"
