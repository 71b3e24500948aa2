#!/bin/bash
# Two real runs of a loop, for the README's "A real run": real ShareGPT prompts sent through
# a real server by tenant acme's key; run 1 promotes a first student; live traffic to it
# goes on while run 2 trains, evaluates, shadows and canaries a challenger.
#
#     bash benchmarks/loop_real_run.sh [../shared/data/sharegpt_prompts.jsonl]
#
# Everything lives in a fresh temporary OPENCLONE_HOME (printed at the end). The teacher is
# the bundled model priced, for illustration, as a small closed API.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=$(realpath "${1:-../shared/data/sharegpt_prompts.jsonl}")
OC=$PWD/.venv/bin/openclone PY=$PWD/.venv/bin/python
export OPENCLONE_HOME=$(mktemp -d /tmp/openclone-loop-run-XXXX)
CFG=$OPENCLONE_HOME/openclone.toml
cat > "$CFG" <<'TOML'
[prices]
"smollm2-135m-instruct" = { input = 0.15, output = 0.60 }

[[loops]]
name = "support"
model = "support"
tenant = "acme"
teacher = "smollm2-135m-instruct"
student_base = "smollm2-135m-instruct"
judge = "smollm2-135m-instruct"
every = "1d"
cost_per_hour = 0.10            # the training machine
serving_cost_per_hour = 0.10    # the serving machine
shadow_pairs = 6
shadow_share = 1.0
shadow_wait = 600
canary_share = 0.5
canary_requests = 10
canary_wait = 600
[loops.budget]
examples = 8
train_steps = 20
eval_prompts = 6
TOML
$OC tenants set acme --consent on -c "$CFG" >/dev/null
KEY=$($OC keys create --tenant acme -c "$CFG" 2>/dev/null | tail -1)
PORT=18979
$OC serve --port $PORT -c "$CFG" > "$OPENCLONE_HOME/serve.log" 2>&1 & SERVER=$!
trap 'touch "$OPENCLONE_HOME/stop"; kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 240); do curl -sf http://127.0.0.1:$PORT/health >/dev/null && break; sleep 0.5; done
traffic() {  # MODEL FIRST COUNT: chats of prompts[FIRST:], until COUNT or the stop file
  $PY - "$PORT" "$KEY" "$DATA" "$1" "$2" "$3" "$OPENCLONE_HOME/stop" <<'PY'
import json, pathlib, sys, time
import openai
port, key, data, model, first, count, stop = sys.argv[1:8]
client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0)
rows = (json.loads(line) for line in open(data))
prompts = [r["instruction"] for r in rows if 20 < len(r["instruction"]) < 160]
t0, n, errors, i = time.time(), 0, 0, int(first)
while n < int(count) and not pathlib.Path(stop).exists():
    try:
        client.chat.completions.create(model=model, max_tokens=48, user=f"person-{i % 7}",
                                       messages=[{"role": "user", "content": prompts[i]}])
    except openai.APIError as exc:
        errors += 1
        print("error:", exc)
    i, n = i + 1, n + 1
print(f"{n} chats to {model} in {time.time() - t0:.1f}s, {errors} errors")
PY
}
traffic smollm2-135m-instruct 0 40
echo "== run 1 $(date -u +%T)"
$OC loop run support -c "$CFG" > "$OPENCLONE_HOME/run1.log" 2>&1 || true
grep '^loop:' "$OPENCLONE_HOME/run1.log"
echo "== run 2 $(date -u +%T), live traffic to support meanwhile"
traffic support 40 400 > "$OPENCLONE_HOME/traffic2.log" 2>&1 & TRAFFIC=$!
sleep 20  # some new captures before run 2 collects
$OC loop run support -c "$CFG" > "$OPENCLONE_HOME/run2.log" 2>&1 || true
grep '^loop:' "$OPENCLONE_HOME/run2.log"
echo "== done $(date -u +%T)"
touch "$OPENCLONE_HOME/stop"; wait $TRAFFIC || true; tail -1 "$OPENCLONE_HOME/traffic2.log"
$OC loop status -c "$CFG"
cat "$OPENCLONE_HOME"/loops/support/run-{1,2}/report.md
echo "OPENCLONE_HOME=$OPENCLONE_HOME"
