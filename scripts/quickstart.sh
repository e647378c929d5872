#!/usr/bin/env bash
# `make quickstart`: a workspace in .quickstart/, then both example programs on the embedded model.
set -euo pipefail
cd "$(dirname "$0")/.."
WS=.quickstart
mkdir -p "$WS"
cd "$WS"

step() { printf '\n\033[1;36m== %s ==\033[0m\n' "$*"; }

step "workspace"
ratchet init . --force
ratchet programs list

step "predict: classify_intent (20 class-balanced demos, embedded Gemma 3 270M)"
ratchet predict classify_intent --k-shot 20 --input text="I still haven't received my new card, when will it arrive?"
ratchet predict classify_intent --k-shot 20 --input text="Can I use Google Pay with my card?"

step "predict: extract_booking (8 demos)"
ratchet predict extract_booking --k-shot 8 --input text="A table for 4 on Friday at 7pm please, name is Maria Lopez"

step "eval: classify_intent, 0-shot vs 40-shot, 100 held-out examples"
ratchet eval classify_intent --k-shot 0 --limit 100
ratchet eval classify_intent --k-shot 40 --limit 100

step "eval: extract_booking, 8-shot, 100 held-out examples"
ratchet eval extract_booking --k-shot 8 --limit 100

printf '\nWorkspace: %s (ratchet.toml, ratchet_programs.py, .ratchet/)\n' "$(pwd)"
