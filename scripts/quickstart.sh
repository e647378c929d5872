#!/usr/bin/env bash
# `make quickstart`: the whole loop on the embedded model, in a workspace at .quickstart/.
#
#   1. a workspace and the bundled programs
#   2. the embedded model answering (predict, eval)
#   3. production traffic: Banking77 messages replayed through the runtime, with feedback from labels
#   4. the monthly cycle on classify_intent: collect → validate → gate → version → optimize → evaluate → decide
#   5. the rollout: traffic again while the controller moves the candidate from shadow through short stages
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DATA="$ROOT/src/ratchet/examples/data/banking77"
WS=.quickstart
rm -rf "$WS"
mkdir -p "$WS"
cd "$WS"

export COLUMNS=${COLUMNS:-120}  # wide enough for the summary tables when output is not a terminal

# Quickstart settings (the same keys can live in ratchet.toml): every call sampled into telemetry,
# and rollout stages of seconds instead of hours.
export RATCHET_TELEMETRY__SAMPLING_RATE=1.0
export RATCHET_ROLLOUT__STAGES='[20, 50, 100]'
export RATCHET_ROLLOUT__MIN_STAGE_MINUTES=0.25
export RATCHET_ROLLOUT__MIN_STAGE_REQUESTS=15
# The candidate first answers in shadow (every request, its answers compared with production's, never returned).
export RATCHET_ROLLOUT__SHADOW_SHARE=1.0
export RATCHET_ROLLOUT__SHADOW_MIN_MINUTES=0.25
export RATCHET_ROLLOUT__SHADOW_MIN_REQUESTS=15
export RATCHET_ROLLOUT__MAX_SHADOW_CALLS_PER_MINUTE=600

step() { printf '\n\033[1;36m== %s ==\033[0m\n' "$*"; }
started=$(date +%s)

step "1. workspace"
ratchet init . --force
ratchet programs list

step "2. the embedded model (Gemma 3 270M, llama.cpp, no API key)"
ratchet predict classify_intent --k-shot 20 --input text="I still haven't received my new card, when will it arrive?"
ratchet predict extract_booking --k-shot 8 --input text="A table for 4 on Friday at 7pm please, name is Maria Lopez"
ratchet eval classify_intent --k-shot 0 --limit 40
ratchet eval classify_intent --k-shot 40 --limit 40

step "3. production traffic: 800 Banking77 messages, feedback (and corrections) from their labels"
ratchet loadtest --signature classify_intent --data "$DATA/train.jsonl" --queries 800 --concurrency 2 \
    --feedback-from-labels --corrections --seed 1

step "4. the monthly cycle for classify_intent (telemetry + synthetic data; optimizer auto: a demo search)"
cycle_status=0
ratchet cycle --signatures classify_intent --git-target 0 --telemetry-target 800 --synthetic-target 80 \
    --trials 10 || cycle_status=$?
summary=$(ls -d .ratchet/runs/run_*/ | tail -1)orchestration_summary.json
experiment=$(python - "$summary" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))["signatures"].get("classify_intent", {})
print(s.get("experiment_id") or "")
EOF
)

if [ -n "$experiment" ]; then
    step "5. rollout of $experiment: replayed traffic while the controller decides (no command from here on)"
    ratchet controller run --interval 3 > .ratchet/controller.out 2>&1 &
    controller=$!
    live() { ratchet ab status --experiment-id "$experiment" --json \
               | python -c 'import json, sys; sys.exit(json.load(sys.stdin)["status"] not in ("shadow", "running", "paused"))'; }
    for round in $(seq 1 12); do
        live || break
        ratchet loadtest --signature classify_intent --data "$DATA/test.jsonl" --queries 40 --concurrency 2 \
            --feedback-from-labels --seed "$round" > /dev/null
    done
    for _ in $(seq 1 20); do live || break; sleep 1; done
    kill "$controller" 2>/dev/null || true
    wait "$controller" || true
    ratchet ab status --experiment-id "$experiment"
    ratchet programs versions classify_intent
else
    step "5. no rollout: the cycle did not deploy a candidate (see the reason above)"
fi

step "where everything lives ($(( $(date +%s) - started )) s)"
cat <<EOF
workspace        $(pwd)  (ratchet.toml, ratchet_programs.py)
telemetry        .ratchet/telemetry/interactions.jsonl (+ rotated .gz)
datasets         .ratchet/training_data/classify_intent/   (ratchet dataset list -s classify_intent)
cycle run        $(dirname "$summary")/   (orchestration_summary.json, collected_data/, validated_data/,
                 quality_reports/, optimization_results/, logs/)
program versions .ratchet/programs/classify_intent/   (ratchet programs versions classify_intent)
experiments      .ratchet/experiments/, .ratchet/routing_config.json   (ratchet ab list)
alerts           .ratchet/alerts/
state database   .ratchet/ratchet.db   (SQLite: per-arm counters, feedback, experiments)
EOF
exit "$cycle_status"
