"""soliplex's terminal client against roomhost, through the client's own code.

PyPI `soliplex` ships a terminal client (`soliplex/tui/`): a REST class, `TUI_REST_API`
(`tui/rest_api.py`, on `requests`), and a textual app (`tui/main.py`) whose screens call it. This
starts the mock LLM and roomhost (as check_events.py does, with a throwaway SQLite store) and makes
the client's calls in the client's order, with the app's own methods where they need no terminal:

- login (`get_oidc_providers`, main.py:1366: `{}` means no sign-in), the rooms
  (`get_rooms`, main.py:1199) and a room (`get_room`), each checked with soliplex's `models.Room`
  and for what the room view shows (main.py:877-881, 906-910: `welcome_message`, `suggestions`);
- for the suggestion of each strategy (sectioning, voting, map-reduce): a turn typed into the room
  view, which is `RoomView.send_agui_prompt` itself (main.py:1043-1182, run without its textual
  worker): it creates the thread with the body it posts, seeds soliplex's parser with the run
  input, posts the run, reads the SSE lines and feeds every event to the parser; then a second turn
  with `parent_run_id` naming the first run (the TUI posts `{}`, main.py:1074-1078, the body model
  `AGUI_NewRunRequest` has `parent_run_id`);
- reopening: the thread list (main.py:700-737), the run list (main.py:614-642), each run
  (main.py:478-486) replayed through the parser seeded with its `run_input`, and
  `RoomView.select_thread` itself (main.py:983-1031), which must rebuild the same conversation;
- renaming (`post_thread_metadata`, main.py:938-956), a run label (`post_run_metadata`,
  main.py:552-566), feedback (`post_run_feedback`, main.py:568-577), and deleting (204, then
  `get_thread` raises a 404 `{"detail": ...}`);
- a run the LLM fails (the parser ends in ERROR, stored and replayed alike), then the next turn
  exactly as the TUI makes it (`{}`: the new run's answer must have the `parent_run_id` key).

Every answer the client parses is validated with the soliplex model its server answers with
(`models.Room`, `AGUI_Threads`, `AGUI_Thread`, `AGUI_Run`).
Needs `textual` and `textual-fspicker`, which `soliplex/tui/main.py` imports but soliplex does not
declare. Usage: python tests/clients/soliplex_client.py  (from the repository root, after cargo build)
"""

import importlib.metadata
import sys
import tempfile
import time
import types
from pathlib import Path

import requests
from pydantic import TypeAdapter
from soliplex import models
from soliplex.agui import parser as soliplex_parser
from soliplex.tui import main as tui
from soliplex.tui import rest_api

from check_events import MOCK_LLM, REPO, mock_url, post, roomhost, start

ROOM = "parallelization"
# The room's suggestions, in order, are one prompt per strategy.
STRATEGIES = ["sectioning", "voting", "map_reduce"]
ROOMS = TypeAdapter(dict[str, models.Room])


class Parser(soliplex_parser.EventStreamParser):
    """soliplex's parser, unchanged, each instance kept so its end state can be checked."""

    made = []

    def __post_init__(self, *args):
        super().__post_init__(*args)
        Parser.made.append(self)


# The TUI's module sees soliplex's parser module with the parser class swapped for the one above.
tui.agui_parser = types.SimpleNamespace(
    EventStreamParser=Parser, agui_event_from_json=soliplex_parser.agui_event_from_json
)


class API(rest_api.TUI_REST_API):
    """soliplex's REST class, keeping each new thread and new run answer to check it; with
    `parent` set, the new-run body names that run as the parent."""

    parent = None
    new_thread = None
    new_run = None

    def post_new_thread(self, room_id, request):
        self.new_thread = super().post_new_thread(room_id, request)
        return self.new_thread

    def post_new_run(self, room_id, thread_id, request):
        if self.parent:
            request = {**request, "parent_run_id": self.parent}
        self.new_run = super().post_new_run(room_id, thread_id, request)
        return self.new_run


class Shown:
    """What a widget is given to show (the response the TUI updates, the chat view it fills)."""

    def __init__(self):
        self.content = None
        self.mounted = []

    def update(self, content):
        self.content = content

    def mount(self, widget):
        self.mounted.append(widget)

    def remove_children(self):
        self.mounted.clear()


def room_view(api, room_info):
    """The state `RoomView` keeps (main.py:838-847), for its methods to run on without a screen."""
    chat = Shown()
    return types.SimpleNamespace(
        room_id=ROOM,
        room_info=room_info,
        rest_api=api,
        verbose=True,  # the TUI then also reads the state and activity events' fields
        run_agent_input=None,
        run_count=0,
        thread_id=None,
        thread_name=None,
        thread_description=None,
        app=types.SimpleNamespace(call_from_thread=lambda f, *args: f(*args)),
        query_one=lambda selector: chat,
        chat=chat,
    )


def answer(messages):
    texts = [m.content for m in messages if m.role == "assistant" and m.content]
    return texts[-1] if texts else None


def turn(view, prompt, end):
    """One prompt typed into the room view; the run's id, its answer and its parser."""
    Parser.made.clear()
    response = Shown()
    # `send_agui_prompt` is a textual worker; its function is run here, in this thread.
    tui.RoomView.send_agui_prompt.__wrapped__(view, prompt, response)
    (parser,) = Parser.made
    run_id = view.run_agent_input.run_id
    where = f"{prompt!r} run {run_id}"
    assert parser.run_status == end, f"{where}: the parser ends {parser.run_status}"
    # What the response shows last (main.py:1165-1171).
    shown = "** done **" if end == soliplex_parser.RunStatus.FINISHED else "** error **"
    assert shown in response.content[-300:], f"{where}: shows {response.content[-300:]!r}"
    text = answer(view.run_agent_input.messages)
    if end == soliplex_parser.RunStatus.FINISHED:
        assert text == parser.result["text"], f"{where}: the answer differs from RUN_FINISHED.result"
    return run_id, text, parser


def replay(api, thread_id, run_id, end):
    """A run as the run view reads it, its stored events through the parser seeded with its input."""
    run = models.AGUI_Run.model_validate(api.get_run(ROOM, thread_id, run_id))
    assert str(run.run_id) == run_id and run.run_input is not None, run_id
    parser = soliplex_parser.EventStreamParser(run.run_input)
    for event in run.events:
        parser(event)
    assert parser.run_status == end, f"run {run_id}: the replay ends {parser.run_status}"
    if end == soliplex_parser.RunStatus.FINISHED:
        # soliplex's usage shape (the run view calls `usage.items()`), one entry for the run.
        usage = run.usage
        assert usage and usage.requests >= 1 and usage.input_tokens > 0, f"usage {usage}"
    return run, answer(parser.messages)


def check_new_thread(api):
    thread = models.AGUI_Thread.model_validate(api.new_thread)
    assert len(thread.runs) == 1, f"a new thread has {len(thread.runs)} runs"
    (run,) = thread.runs.values()
    assert "state" in api.new_thread["runs"][str(run.run_id)]["run_input"], "no run_input.state"


def check_new_run(api, parent):
    assert "parent_run_id" in api.new_run, f"a new run's answer has no `parent_run_id`: {api.new_run}"
    run = models.AGUI_Run.model_validate(api.new_run)
    assert (run.parent_run_id and str(run.parent_run_id)) == parent, f"parent {run.parent_run_id}"


def recorded(api, thread_id, runs):
    """The thread once its runs are recorded as finished. The store commits in batches (every
    25 ms, README "The store"), so a stream can end before its run's last writes are readable."""
    deadline = time.monotonic() + 10
    while True:
        thread = api.get_thread(ROOM, thread_id)
        done = [r for r in thread["runs"].values() if r.get("finished")]
        if len(done) == runs or time.monotonic() > deadline:
            return thread
        time.sleep(0.05)


def reopen(api, room_info, thread_id, turns):
    """The thread as a restarted TUI finds it; `turns` is [(run_id, parent, answer, end)]."""
    listed = models.AGUI_Threads.model_validate(api.get_room_threads(ROOM))
    assert thread_id in [str(t.thread_id) for t in listed.threads], f"{thread_id} not listed"
    raw = recorded(api, thread_id, len(turns))
    # The room view reopens it on its last run (main.py:995-1002): oldest first, so the latest.
    view = room_view(api, room_info)
    tui.RoomView.select_thread(view, thread_id)
    assert view.run_count == len(turns)
    assert answer(view.run_agent_input.messages) == turns[-1][2], "reopened, the answer differs"
    shown = [type(w).__name__ for w in view.chat.mounted]
    assert shown.count("Prompt") == len(turns) and "Response" in shown, shown
    # The run list (main.py:633-637) reads each run's `metadata`; each run view (main.py:478-541)
    # reads the run with its events.
    thread = models.AGUI_Thread.model_validate(raw)
    assert [str(r) for r in thread.runs] == [t[0] for t in turns], f"runs {list(raw['runs'])}"
    for run_id, parent, text, end in turns:
        assert "metadata" in raw["runs"][run_id], f"run {run_id} has no `metadata` key"
        run, replayed = replay(api, thread_id, run_id, end)
        assert (run.parent_run_id and str(run.parent_run_id)) == parent, f"run {run_id} parent"
        assert replayed == text, f"run {run_id}: the replay's answer differs from the live one"


def rename(api, thread_id, run_id):
    """The room view's thread metadata dialog (main.py:293-310, 938-956) and the run view's
    feedback dialog (main.py:236-257, 568-577)."""
    meta = {"name": "green tea", "description": "renamed by the terminal client"}
    api.post_thread_metadata(ROOM, thread_id, meta)
    got = models.AGUI_ThreadMetadata.model_validate(api.get_thread(ROOM, thread_id)["metadata"])
    assert got.model_dump() == meta, got
    api.post_run_feedback(ROOM, thread_id, run_id, {"feedback": "thumbs_up", "reason": "clear"})


def label(api, thread_id, run_id):
    """The run view's label dialog (main.py:190-199, 552-566); the run list shows the label
    (main.py:633-637)."""
    api.post_run_metadata(ROOM, thread_id, run_id, {"label": "second turn"})
    run = models.AGUI_Run.model_validate(api.get_run(ROOM, thread_id, run_id))
    assert run.metadata and run.metadata.label == "second turn", run.metadata
    listed = api.get_thread(ROOM, thread_id)["runs"][run_id]["metadata"]
    assert listed and listed["label"] == "second turn", listed


def delete(api, thread_id, run_id):
    """TUI_REST_API has no delete; soliplex's frontend deletes with this route and soliplex's
    server answers 204 (views/agui.py:537-573): the class's own URL builder and headers."""
    gone = requests.delete(api.thread_url(ROOM, thread_id), headers=api.api_v1_headers)
    assert gone.status_code == 204, f"delete: {gone.status_code} {gone.text}"
    not_found(lambda: api.get_thread(ROOM, thread_id), "a deleted thread")
    not_found(lambda: api.get_run(ROOM, thread_id, run_id), "a deleted thread's run")


def not_found(read, what):
    """`read` raises `requests.HTTPError` (its `raise_for_status`): 404, soliplex's error body."""
    try:
        read()
    except requests.HTTPError as e:
        assert e.response.status_code == 404, f"{what}: {e.response.status_code}"
        assert "detail" in e.response.json(), f"{what}: {e.response.text}"
    else:
        raise AssertionError(f"{what} is there")


def check(failures, name, step, *args):
    """Runs one step; a failure is kept (the first lines of it) and the next step still runs."""
    try:
        step(*args)
        return True
    except Exception as e:  # noqa: BLE001 - every failure is reported, then the exit is non-zero
        failures.append(f"{name}: {type(e).__name__}: " + "\n  ".join(str(e).splitlines()[:6]))
        return False


def conversation(api, room_info, control, prompts, strategy):
    """Two turns in a new thread, the first answered with `strategy`, or failed by the LLM when
    that is None; the thread's id and its turns, as `reopen` takes them."""
    finished, error = soliplex_parser.RunStatus.FINISHED, soliplex_parser.RunStatus.ERROR
    fail_first = strategy is None
    view = room_view(api, room_info)
    post(control + "reset", {}).close()
    if fail_first:
        post(control + "mode", {"mode": "fail_status", "status": 503}).close()
    api.parent = None
    first, first_text, parser = turn(view, prompts[0], error if fail_first else finished)
    check_new_thread(api)
    if not fail_first:
        assert parser.result["strategy"] == strategy, f"{prompts[0]!r}: {parser.result['strategy']}"
    post(control + "reset", {}).close()
    # After a failed run, the next turn is exactly the TUI's (`{}`); otherwise it names its parent.
    parent = None if fail_first else first
    api.parent = parent
    second, second_text, _ = turn(view, prompts[1], finished)
    check_new_run(api, parent)
    turns = [
        (first, None, first_text, error if fail_first else finished),
        (second, parent, second_text, finished),
    ]
    return view.thread_id, turns



def main():
    mock, llm = start([MOCK_LLM, "--port", "0"], {}, mock_url)
    control = f"{llm}/_mock/"
    host = None
    failures, checks = [], 0
    try:
        with tempfile.TemporaryDirectory() as db:
            store = {"ROOMHOST_DATABASE_URL": f"sqlite://{Path(db, 'roomhost.db')}"}
            host, url = roomhost(llm, REPO / "rooms", store)
            api = API(url)
            assert api.get_oidc_providers() == {}, "login: sign-in should be off"
            rooms = api.get_rooms()
            room_info = api.get_room(ROOM)
            suggestions = room_info["suggestions"]
            assert len(suggestions) == len(STRATEGIES), suggestions

            def room_model():
                ROOMS.validate_python(rooms)
                room = models.Room.model_validate(room_info)
                assert room_info == rooms[ROOM], "the room differs from its entry in the list"
                assert room.welcome_message and room.description and room.suggestions, room_info
                not_found(lambda: api.get_room("no-such-room"), "an unknown room")

            checks += 1
            check(failures, "rooms", room_model)
            cases = [(p, [p, "Say more."], s) for p, s in zip(suggestions, STRATEGIES)]
            cases.append(("a failed run, then the next turn", suggestions[:2], None))
            for name, prompts, strategy in cases:
                found = []
                checks += 1
                ok = check(
                    failures,
                    repr(name),
                    lambda: found.extend(conversation(api, room_info, control, prompts, strategy)),
                )
                if not ok or not found:
                    continue
                thread_id, turns = found
                checks += 1
                check(failures, f"{name!r} reopen", reopen, api, room_info, thread_id, turns)
                for step in (rename, label, delete):
                    checks += 1
                    check(failures, f"{name!r} {step.__name__}", step, api, thread_id, turns[-1][0])
    finally:
        for proc in [p for p in (host, mock) if p]:
            proc.terminate()
            proc.wait(timeout=10)
    for failure in failures:
        print(f"FAIL {failure}")
    version = importlib.metadata.version("soliplex")
    summary = (
        f"soliplex {version} terminal client, {checks} checks ({len(STRATEGIES)} strategies and a "
        "failed run, 2 turns each, reopened, renamed, labelled, deleted) through TUI_REST_API and "
        "the TUI's own turn and reopen code, every answer valid for soliplex's models"
    )
    if failures:
        print(f"{summary}: {len(failures)} failed")
        return 1
    print(f"{summary}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
