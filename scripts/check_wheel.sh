#!/usr/bin/env bash
# CI step of `make test`: does Ratchet work as users install it, not as this clone runs it?
#
# Builds Ratchet's wheel, installs it (not editable) with its dependencies into a fresh venv in a
# temporary directory, and from there (outside the source tree) runs `ratchet doctor` and one
# `ratchet predict` on the embedded model. A module missing from the wheel, an undeclared
# dependency or package data left out fails here, though the editable install hides it.
# llama.cpp comes from the same prebuilt wheel `make` uses (scripts/llama_wheel.sh), not compiled again.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ratchet-wheel-check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

step() { printf '\n== wheel check: %s ==\n' "$*"; }
started=$(date +%s)

step "build the wheel"
"$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$WORK/dist" "$ROOT"
ls "$WORK"/dist

step "install it into a fresh venv"
"$PYTHON" -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install --quiet --upgrade pip
llama_wheels=$(PYTHON="$WORK/venv/bin/python" bash "$ROOT/scripts/llama_wheel.sh")
"$WORK/venv/bin/python" -m pip install --quiet --only-binary llama-cpp-python --find-links "$llama_wheels" \
    "$WORK"/dist/ratchet-*.whl

step "ratchet doctor and ratchet predict, outside the source tree"
mkdir "$WORK/workspace"
cd "$WORK/workspace"
location=$("$WORK/venv/bin/python" -c 'import ratchet, os; print(os.path.dirname(ratchet.__file__))')
case "$location" in
  "$ROOT"/*) echo "ratchet was imported from the source tree ($location), not from the wheel" >&2; exit 1 ;;
esac
"$WORK/venv/bin/ratchet" --version
"$WORK/venv/bin/ratchet" doctor --no-remote
"$WORK/venv/bin/ratchet" predict classify_intent --k-shot 10 \
    --input text="I still haven't received my new card, when will it arrive?"
echo "wheel check passed in $(( $(date +%s) - started )) s"
