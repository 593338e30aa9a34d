"""A minimal Ollama-native server (`POST /api/chat`, NDJSON) over a real GGUF model.

No Ollama binary can be had here, so the real-model tests put SmolLM2 behind this shim to exercise
the Ollama wire format end to end (shapes and error messages as in Ollama's docs/api.md and
server/routes.go). Started by scripts/with-real-model.sh:

    SHIM_GGUF=model.gguf SHIM_MODEL_NAME=smollm2-135m \
        .venv-llm/bin/python -m uvicorn --app-dir scripts ollama_shim:app --port 18012
"""

import asyncio
import contextlib
import datetime
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from llama_cpp import Llama

GGUF = os.environ["SHIM_GGUF"]
NAME = os.environ.get("SHIM_MODEL_NAME", "smollm2-135m")
# num_ctx is fixed at load time; a per-request num_ctx is ignored (Ollama would reload the model).
llm = Llama(model_path=GGUF, n_ctx=2048, n_threads=2, verbose=False)
# One worker: calls run one at a time in arrival order, like OLLAMA_NUM_PARALLEL=1 (FIFO), and
# Llama itself is not thread-safe.
worker = ThreadPoolExecutor(max_workers=1)
# How often a call waiting for the model or for its next token checks that its client is still there.
POLL_SECS = 0.25

app = FastAPI()


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status)


@app.get("/")
def root():
    return PlainTextResponse("Ollama is running")


@app.get("/api/tags")
def tags():
    return {"models": [{
        "name": NAME, "model": NAME, "modified_at": now(), "size": os.path.getsize(GGUF),
        "digest": "0" * 64,
        "details": {"format": "gguf", "family": "llama", "families": ["llama"],
                    "parameter_size": "135M", "quantization_level": "Q4_1"},
    }]}


def generation_args(body: dict) -> dict:
    """Maps Ollama's request onto llama_cpp's, with Ollama's defaults for what is left out."""
    o = body.get("options") or {}
    num_predict = o.get("num_predict", -1)
    args = dict(
        messages=body.get("messages") or [],
        temperature=o.get("temperature", 0.8), top_p=o.get("top_p", 0.9), top_k=o.get("top_k", 40),
        seed=o.get("seed"), stop=o.get("stop"),
        max_tokens=None if num_predict is None or num_predict < 0 else num_predict,
    )
    fmt = body.get("format")
    # llama_cpp takes a schema only inside json_object; both forms are enforced by a grammar.
    if fmt == "json":
        args["response_format"] = {"type": "json_object"}
    elif isinstance(fmt, dict):
        args["response_format"] = {"type": "json_object", "schema": fmt}
    return args


def generate(args: dict, emit, stop: threading.Event):
    """Runs on the worker thread: emits ("token", text) per token, then ("done", final fields),
    or ("error", message) if llama_cpp fails, so that the response never waits forever."""
    try:
        emit(("done", run_model(args, emit, stop)))
    except Exception as e:  # noqa: BLE001 - any failure goes to the client, as Ollama's runner does
        emit(("error", f"{type(e).__name__}: {e}"))


def run_model(args: dict, emit, stop: threading.Event) -> dict:
    start = time.time_ns()
    tokens, reason = 0, "stop"
    if not stop.is_set():  # the client may have left while queued
        chunks = llm.create_chat_completion(stream=True, **args)
        try:
            for chunk in chunks:
                if stop.is_set():
                    break
                choice = chunk["choices"][0]
                text = choice["delta"].get("content")
                if text:
                    tokens += 1
                    emit(("token", text))
                reason = choice.get("finish_reason") or reason
        finally:
            chunks.close()  # ends llama_cpp's generation loop
    elapsed = max(time.time_ns() - start, 1)
    # llama_cpp streams no usage; the context holds the prompt followed by the generated tokens.
    metrics = {"total_duration": elapsed, "load_duration": 0,
               "prompt_eval_count": max(llm.n_tokens - tokens, 0), "prompt_eval_duration": 0,
               "eval_count": tokens, "eval_duration": elapsed}
    # Ollama leaves zero metrics out (omitempty).
    return {"done_reason": reason, **{k: v for k, v in metrics.items() if v}}


def line(model: str, content: str, done: bool, **final) -> str:
    chunk = {"model": model, "created_at": now(),
             "message": {"role": "assistant", "content": content}, "done": done, **final}
    return json.dumps(chunk, separators=(",", ":")) + "\n"


@app.post("/api/chat")
async def chat(request: Request):
    try:
        body = await request.json()
    except ValueError:
        return error(400, "invalid JSON body")
    model = body.get("model") or ""
    if not model:
        return error(400, "model is required")
    if model not in (NAME, f"{NAME}:latest"):
        return error(404, f"model '{model}' not found")
    # A non-thinking model refuses any think value but false, as real Ollama does.
    if body.get("think") not in (None, False):
        return error(400, f'"{model}" does not support thinking')
    args = generation_args(body)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    stop = threading.Event()
    worker.submit(generate, args, lambda item: loop.call_soon_threadsafe(queue.put_nowait, item), stop)

    async def events():
        """Yields ("token", text)... then ("done", final) or ("error", message), until the
        client leaves."""
        try:
            while True:
                try:
                    kind, value = await asyncio.wait_for(queue.get(), POLL_SECS)
                except asyncio.TimeoutError:
                    if await request.is_disconnected():
                        return
                    continue
                yield kind, value
                if kind != "token":
                    return
        finally:
            # Reached on completion, on disconnect, and when the server cancels the response.
            stop.set()

    if body.get("stream", True):
        async def ndjson():
            # aclosing: leaving early must reach events()' finally now, not when it is collected.
            async with contextlib.aclosing(events()) as stream:
                async for kind, value in stream:
                    if kind == "token":
                        yield line(model, value, False)
                    elif kind == "done":
                        yield line(model, "", True, **value)
                    else:  # once the 200 has gone out, Ollama reports a failure as an error line
                        yield json.dumps({"error": value}) + "\n"
                    if await request.is_disconnected():
                        return
        return StreamingResponse(ndjson(), media_type="application/x-ndjson")

    text = []
    async for kind, value in events():  # runs to its end or to the client's leaving
        if kind == "token":
            text.append(value)
        elif kind == "done":
            return JSONResponse(json.loads(line(model, "".join(text), True, **value)))
        else:
            return error(500, value)
    return error(499, "client closed the connection")  # nobody reads this
