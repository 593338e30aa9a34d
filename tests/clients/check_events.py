"""Every event roomhost streams, through PyPI clients' own code.

Starts the mock LLM and roomhost (debug builds, as tests/conformance does), runs every strategy
and the error cases in both event profiles, and checks each event with the installed
`ag-ui-protocol` event models (an unknown type, a missing or mistyped field or a field the
models do not define fails). When PyPI `soliplex` is installed (its venv pins ag-ui-protocol
0.1.18), the legacy stream, which is what soliplex's clients get, also goes through its event
parser (`soliplex/agui/parser.py`: `agui_event_from_json` and `EventStreamParser` seeded with
the run input, as its terminal client and its server's run replay use it), which must end the
run and hold the answer and the activity of `RUN_FINISHED.result`.

Usage: python tests/clients/check_events.py  (from the repository root, after cargo build)
"""

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from pydantic import TypeAdapter

from ag_ui import core as agui_core

try:
    from soliplex.agui import parser as soliplex_parser
except ImportError:
    soliplex_parser = None

REPO = Path(__file__).resolve().parents[2]
ROOMHOST = os.environ.get("ROOMHOST_BIN", str(REPO / "target/debug/roomhost"))
MOCK_LLM = os.environ.get("MOCK_LLM_BIN", str(REPO / "target/debug/examples/mock_llm"))
VERSION = importlib.metadata.version("ag-ui-protocol")
EVENT = TypeAdapter(agui_core.Event)
# A generation with subagent events defines every event and field roomhost sends: both profiles
# must validate with nothing undefined. An older one (soliplex's pin, 0.1.18) gets the legacy
# profile only, whose newer fields (`RUN_FINISHED.usage`) its models keep as extras.
COMPLETE = hasattr(agui_core.EventType, "SUBAGENT_STARTED")

PROMPTS = [
    ("Write about AI ethics: Privacy, Bias, Transparency", {}),
    ("Is remote work better than office work?", {}),
    ("Summarize: Article1 | Article2 | Article3", {}),
    ("Tell me about green tea.", {"strategy": "sectioning"}),
    ("Tell me about green tea.", {"strategy": "voting"}),
    ("Tell me about green tea.", {"strategy": "map_reduce"}),
]
# (mock mode, prompt, how the run ends)
FAULTS = [
    ({"mode": "fail_status", "status": 503}, PROMPTS[0][0], "RUN_ERROR"),
    ({"mode": "fail_mid_stream"}, PROMPTS[1][0], "RUN_ERROR"),
    ({"mode": "fail_mid_stream", "fail_every": 2}, PROMPTS[0][0], "RUN_FINISHED"),
]
PROFILES = {"legacy": {}, "full": {"protocolVersion": "1.0"}}


def start(args, env, ready):
    proc = subprocess.Popen(
        args,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return proc, ready(proc)


def mock_url(proc):
    for line in proc.stdout:
        found = re.search(r"listening on (http://\S+)", line)
        if found:
            return found.group(1)
    raise RuntimeError("mock_llm exited during start-up")


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def roomhost(llm, rooms_dir, extra_env=None):
    port = free_port()
    env = {
        "OLLAMA_BASE_URL": llm,
        "ROOMHOST_ROOMS_DIR": str(rooms_dir),
        "ROOMHOST_ADDR": f"127.0.0.1:{port}",
        "RUST_LOG": "warn",
        **(extra_env or {}),
    }
    proc = subprocess.Popen([ROOMHOST], env={**os.environ, **env}, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/healthz", timeout=1)
            return proc, url
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("roomhost did not answer /healthz")


def post(url, body):
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Accept": "text/event-stream"},
        method="POST",
    )
    return urllib.request.urlopen(request, timeout=120)


def run(url, prompt, props, profile):
    body = {
        "threadId": str(uuid.uuid4()),
        "runId": str(uuid.uuid4()),
        "state": {},
        "messages": [{"id": str(uuid.uuid4()), "role": "user", "content": prompt}],
        "tools": [],
        "context": [],
        "forwardedProps": props,
        **PROFILES[profile],
    }
    events = []
    with post(f"{url}/rooms/parallelization/run", body) as resp:
        for raw in resp:
            line = raw.decode().rstrip("\n")
            # soliplex's clients read one `data:` line per event, besides `id:` and comments.
            assert line == "" or line.startswith(("data: ", "id: ", ":")), line
            if line.startswith("data: "):
                events.append(json.loads(line[len("data: "):]))
    return body, events


def check_models(events, where):
    for i, event in enumerate(events):
        try:
            model = EVENT.validate_python(event)
        except Exception as e:  # noqa: BLE001 - the message is the finding
            raise AssertionError(f"{where}: event {i} {event['type']} fails ag-ui-protocol {VERSION}: {e}")
        extra = set(model.model_extra or {})
        assert not extra or not COMPLETE, f"{where}: event {i} has fields ag-ui-protocol {VERSION} does not define: {extra}"


def check_soliplex(body, events, where):
    parser = soliplex_parser.EventStreamParser(agui_core.RunAgentInput.model_validate(body))
    for event in events:
        parser(soliplex_parser.agui_event_from_json(event))
    last = events[-1]
    if last["type"] == "RUN_ERROR":
        assert parser.run_status == soliplex_parser.RunStatus.ERROR, where
        return
    assert parser.run_status == soliplex_parser.RunStatus.FINISHED, where
    result = parser.result
    answers = [m for m in parser.messages[1:] if m.role == "assistant"]
    assert [m.content for m in answers] == [result["text"]], f"{where}: the answer differs"
    activities = [m for m in parser.messages if m.role == "activity"]
    assert [a.content for a in activities] == [result["activity"]], f"{where}: the activity differs"


def main():
    mock, llm = start([MOCK_LLM, "--port", "0"], {}, mock_url)
    hosts = []
    try:
        plain_proc, plain = roomhost(llm, REPO / "rooms")
        hosts.append(plain_proc)
        with tempfile.TemporaryDirectory() as rooms:
            yaml = (REPO / "rooms/parallelization/room_config.yaml").read_text()
            Path(rooms, "parallelization").mkdir()
            Path(rooms, "parallelization/room_config.yaml").write_text(
                yaml.replace("  extra_config:\n", "  extra_config:\n    show_thinking: true\n")
            )
            thinking_proc, thinking = roomhost(llm, rooms)
            hosts.append(thinking_proc)
            cases = [(plain, p, props, None, None) for p, props in PROMPTS]
            cases += [(thinking, p, props, None, None) for p, props in PROMPTS[:3]]
            cases += [(plain, p, {}, mode, end) for mode, p, end in FAULTS]
            streams = 0
            for url, prompt, props, mode, end in cases:
                for profile in PROFILES:
                    control = f"{llm}/_mock/"
                    post(control + "reset", {}).close()
                    if mode:
                        post(control + "mode", mode).close()
                    where = f"{profile} {prompt!r} {props or ''} {mode or ''}"
                    body, events = run(url, prompt, props, profile)
                    assert events[0]["type"] == "RUN_STARTED", where
                    assert events[-1]["type"] == (end or "RUN_FINISHED"), f"{where}: {events[-1]}"
                    if profile == "legacy":
                        assert not any(e["type"].startswith("SUBAGENT") for e in events), where
                    if COMPLETE or profile == "legacy":
                        check_models(events, where)
                    if soliplex_parser and profile == "legacy":
                        check_soliplex(body, events, where)
                    streams += 1
    finally:
        for proc in [*hosts, mock]:
            proc.terminate()
            proc.wait(timeout=10)
    checked = f"ag-ui-protocol {VERSION} models on {'both profiles' if COMPLETE else 'the legacy streams'}"
    if soliplex_parser:
        checked += f", soliplex {importlib.metadata.version('soliplex')} parser on the legacy streams"
    print(f"{streams} streams ({len(cases)} cases x {len(PROFILES)} profiles): {checked}: ok")


if __name__ == "__main__":
    sys.exit(main())
