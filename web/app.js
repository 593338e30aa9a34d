// The chat page: lists rooms, sends a message to POST /rooms/{id}/run and draws the AG-UI events
// of the run as they stream in: one card per subagent, the activity's progress and phase, the final
// answer as Markdown and, for voting, the votes. Model output only ever reaches the page as
// textContent or through the escaping Markdown renderer.

import { applyPatch } from "./patch.js";
import { renderMarkdown } from "./markdown.js";
import { sseJson } from "./sse.js";
import { roomView } from "./room-views.js";

const $ = (id) => document.getElementById(id);

function h(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// crypto.randomUUID exists only in secure contexts; the page may be served over plain http.
function uuid() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

const number = new Intl.NumberFormat("en-US");
const SOURCE_NAMES = { explicit: "chosen", pattern: "detected", conversation: "follow-up", default: "room default" };
const CUT_NAMES = { max_tokens: "cut: token limit", repetition: "cut: looping" };
const PHASE_NAMES = {
  starting: "Starting",
  running: "Running",
  aggregating: "Aggregating",
  complete: "Complete",
  failed: "Failed",
  stopped: "Stopped",
};

const ui = {
  rooms: $("rooms"),
  status: $("server-status"),
  roomName: $("room-name"),
  roomDescription: $("room-description"),
  transcript: $("transcript"),
  welcome: $("welcome"),
  welcomeText: $("welcome-text"),
  suggestions: $("suggestions"),
  strategyPicker: $("strategy-picker"),
  form: $("composer-form"),
  prompt: $("prompt"),
  send: $("send"),
  stop: $("stop"),
  newChat: $("new-chat"),
  threads: $("threads"),
  threadsTitle: $("threads-title"),
  retry: $("retry-backend"),
  statusHint: $("status-hint"),
};

const state = {
  rooms: [],
  room: null,
  threadId: uuid(),
  history: [], // the conversation so far, sent with each run as AG-UI messages
  active: null, // { view, controller, runId } while a run streams
  followOutput: true, // keep the transcript scrolled to the bottom unless the user scrolled up
  backendDown: false, // /readyz says no LLM backend answers: Send waits for it
};

// ---- Token usage -------------------------------------------------------------------------------

/** Tokens of a task's usage in the activity (`input_tokens`, `output_tokens`). */
function taskTokens(usage) {
  return usage ? (usage.input_tokens ?? 0) + (usage.output_tokens ?? 0) : 0;
}

/** Tokens of `RUN_FINISHED.usage`: AG-UI usage entries, one per model. */
function runTokens(usage) {
  return (usage ?? []).reduce((sum, u) => sum + (u.totalTokens ?? (u.inputTokens ?? 0) + (u.outputTokens ?? 0)), 0);
}

// ---- Thinking ---------------------------------------------------------------------------------

/** A model's streamed thinking (REASONING_* events): collapsed, shown once some arrives. */
class Thinking {
  constructor() {
    this.root = h("details", "thinking");
    this.root.hidden = true;
    this.summary = h("summary", "", "Thinking");
    this.textEl = h("p", "thinking-text");
    this.root.append(this.summary, this.textEl);
  }

  append(delta) {
    this.root.hidden = false;
    this.textEl.append(delta);
    this.summary.textContent = `Thinking · ${number.format(this.textEl.textContent.length)} chars`;
  }
}

// ---- One task card -----------------------------------------------------------------------------

class TaskCard {
  constructor(label) {
    this.streamed = false;
    this.root = h("div", "task");
    const head = h("div", "task-head");
    this.labelEl = h("span", "task-label", label);
    this.labelEl.title = label;
    this.statusEl = h("span", "task-status");
    head.append(this.labelEl, this.statusEl);
    this.textEl = h("p", "task-text");
    const foot = h("div", "task-foot");
    this.tokensEl = h("span", "task-tokens");
    this.charsEl = h("span", "task-chars");
    foot.append(this.tokensEl, this.charsEl);
    this.errorEl = h("div", "task-error");
    this.thinking = new Thinking();
    this.root.append(head, this.thinking.root, this.textEl, this.errorEl, foot);
    this.setStatus("pending");
  }

  /** pending, running, complete, failed or stopped */
  setStatus(status) {
    this.root.dataset.status = status;
    this.statusEl.textContent = status;
  }

  append(delta) {
    this.streamed = true;
    this.textEl.append(delta);
    this.textEl.scrollTop = this.textEl.scrollHeight;
    this.charsEl.textContent = `${number.format(this.textEl.textContent.length)} chars`;
  }

  fail(message) {
    this.setStatus("failed");
    this.errorEl.textContent = message;
  }

  /** Applies one entry of the activity's `results`: status, usage, error, output. */
  applyResult(result) {
    this.labelEl.textContent = result.label;
    this.labelEl.title = result.label;
    this.setStatus(result.status);
    if (result.error) this.errorEl.textContent = result.error;
    // Stopped before the model ended its answer: the text shown is not all it would have said.
    if (result.truncated) {
      this.root.dataset.cut = result.truncated;
      this.statusEl.textContent = CUT_NAMES[result.truncated] ?? "cut short";
      this.statusEl.title = `${result.status}, but stopped before the model ended its answer`;
    }
    const tokens = taskTokens(result.usage);
    if (tokens) this.tokensEl.textContent = `${number.format(tokens)} tokens`;
    // The output streamed already, unless this page joined late or the task sent no deltas.
    if (!this.streamed && result.output) this.textEl.textContent = result.output;
    if (result.status === "complete") this.showStructured();
  }

  /** A voter's reply is JSON (`answer`, `reasoning`, ...): shown as the answer and its reasons. */
  showStructured() {
    let reply;
    try {
      reply = JSON.parse(this.textEl.textContent);
    } catch {
      return;
    }
    if (!reply || typeof reply !== "object" || typeof reply.answer !== "string") return;
    const rest = Object.entries(reply).filter(([key, value]) => key !== "answer" && typeof value !== "object");
    this.textEl.replaceChildren(
      h("strong", "vote-answer", reply.answer),
      ...rest.map(([key, value]) => h("span", "vote-field", `${key.replaceAll("_", " ")}: ${value}`)),
    );
    this.textEl.dataset.structured = "true";
  }
}

// ---- One run -----------------------------------------------------------------------------------

class RunView {
  constructor(prompt) {
    this.cards = new Map(); // by subagentRunId
    this.cardByMessage = new Map();
    this.thinkingByMessage = new Map();
    this.activityId = undefined;
    this.activity = undefined;
    this.answerId = undefined;
    this.answer = "";
    this.state = "running";
    this.ended = false;
    this.startedAt = performance.now();
    this.renderQueued = false;

    this.root = h("article", "turn");
    this.root.append(h("div", "user-msg", prompt));

    this.panel = h("section", "run");
    this.panel.dataset.state = "running";
    const head = h("div", "run-head");
    this.strategyEl = h("span", "pill strategy");
    this.strategyEl.hidden = true;
    this.phaseEl = h("span", "pill phase");
    this.stepEl = h("span", "step");
    const meta = h("div", "run-meta");
    this.tokensEl = h("span", "run-tokens");
    this.elapsedEl = h("span", "run-elapsed");
    meta.append(this.tokensEl, this.elapsedEl);
    head.append(this.strategyEl, this.phaseEl, this.stepEl, meta);

    // Shown with the first activity; a run refused before it starts has no progress to show.
    const progressRow = h("div", "progress-row");
    progressRow.hidden = true;
    this.progressRow = progressRow;
    const track = h("div", "progress");
    track.setAttribute("role", "progressbar");
    track.setAttribute("aria-valuemin", "0");
    this.track = track;
    this.bar = h("div", "progress-bar");
    track.append(this.bar);
    this.progressLabel = h("span", "progress-label", "Planning tasks…");
    progressRow.append(track, this.progressLabel);

    this.tasksEl = h("div", "tasks");
    this.notesEl = h("ul", "notes");
    this.roomEl = h("div", "room-view-slot");

    this.votesBlock = h("div", "votes-block");
    this.votesBlock.hidden = true;
    const votesHead = h("div", "votes-head");
    this.agreementEl = h("span", "agreement");
    votesHead.append(h("h3", "block-title", "Votes"), this.agreementEl);
    this.votesEl = h("div", "vote-rows");
    this.votesBlock.append(votesHead, this.votesEl);

    this.answerBlock = h("div", "answer-block");
    this.answerBlock.hidden = true;
    this.answerEl = h("div", "answer markdown");
    this.thinking = new Thinking();
    this.answerBlock.append(h("h3", "block-title", "Answer"), this.thinking.root, this.answerEl);

    this.errorEl = h("div", "error-box");
    this.errorEl.setAttribute("role", "alert");
    this.errorEl.hidden = true;

    this.panel.append(head, progressRow, this.roomEl, this.tasksEl, this.notesEl, this.votesBlock, this.answerBlock, this.errorEl);
    this.root.append(this.panel);
    this.setPhase("starting");
    this.tick = setInterval(() => this.showElapsed(), 200);
    this.showElapsed();
  }

  showElapsed() {
    this.elapsedEl.textContent = `${((performance.now() - this.startedAt) / 1000).toFixed(1)} s`;
  }

  setPhase(phase) {
    this.phaseEl.dataset.phase = phase;
    this.phaseEl.textContent = PHASE_NAMES[phase] ?? phase;
  }

  /** A task's card: the activity lists tasks (with their subagentRunId) before they start. */
  card(subagentRunId, label) {
    let card = this.cards.get(subagentRunId);
    if (!card) {
      card = new TaskCard(label);
      this.cards.set(subagentRunId, card);
      this.tasksEl.append(card.root);
    }
    return card;
  }

  handle(event) {
    switch (event.type) {
      case "ACTIVITY_SNAPSHOT":
        this.activityType = event.activityType;
        this.activityId = event.messageId;
        this.activity = event.content;
        this.renderActivity();
        return;
      case "ACTIVITY_DELTA":
        if (event.messageId !== this.activityId || this.activity === undefined) return;
        try {
          this.activity = applyPatch(this.activity, event.patch);
        } catch (e) {
          this.showError("A progress update could not be applied", e.message);
          return;
        }
        this.renderActivity();
        return;
      case "STEP_STARTED":
        this.stepEl.textContent = `Step: ${event.stepName}`;
        return;
      case "STEP_FINISHED":
        if (this.stepEl.textContent === `Step: ${event.stepName}`) this.stepEl.textContent = "";
        return;
      case "SUBAGENT_STARTED":
        this.card(event.subagentRunId, event.name).setStatus("running");
        return;
      case "SUBAGENT_FINISHED":
        this.cards.get(event.subagentRunId)?.setStatus("complete");
        return;
      case "SUBAGENT_ERROR":
        this.cards.get(event.subagentRunId)?.fail(event.message);
        return;
      case "TEXT_MESSAGE_START":
        if (event.subagentRunId !== undefined) {
          const card = this.cards.get(event.subagentRunId);
          if (card) this.cardByMessage.set(event.messageId, card);
        } else {
          this.answerId = event.messageId;
          this.answer = "";
          this.answerBlock.hidden = false;
        }
        return;
      case "TEXT_MESSAGE_CONTENT": {
        const card = this.cardByMessage.get(event.messageId);
        if (card) card.append(event.delta);
        else if (event.messageId === this.answerId) {
          this.answer += event.delta;
          this.queueAnswerRender();
        }
        return;
      }
      case "REASONING_MESSAGE_START": {
        // A subagent's thinking goes in its card; the run's own (a tie-break judge, say) above the answer.
        const thinking = event.subagentRunId !== undefined ? this.cards.get(event.subagentRunId)?.thinking : this.thinking;
        if (thinking) this.thinkingByMessage.set(event.messageId, thinking);
        if (thinking === this.thinking) this.answerBlock.hidden = false;
        return;
      }
      case "REASONING_MESSAGE_CONTENT":
        this.thinkingByMessage.get(event.messageId)?.append(event.delta);
        return;
      case "TEXT_MESSAGE_END":
        if (event.messageId === this.answerId) this.renderAnswer();
        return;
      case "RUN_FINISHED":
        this.finish(event);
        return;
      case "RUN_ERROR":
        if (event.code === "cancelled") {
          this.stopped();
          return;
        }
        this.showError("The run failed", event.message, event.code);
        // Each task failed for the same reason: the run's message says it once.
        for (const card of this.cards.values()) {
          if (card.errorEl.textContent && event.message.includes(card.errorEl.textContent)) card.errorEl.textContent = "";
        }
        this.end("failed");
        return;
      default:
    }
  }

  renderActivity() {
    const a = this.activity;
    if (!a || typeof a !== "object") return;
    this.progressRow.hidden = false;
    if (a.status) this.setPhase(a.status);
    if (a.strategy) {
      const sourceName = SOURCE_NAMES[a.strategy_source];
      // "Follow-up · follow-up" says nothing twice.
      const source = sourceName && sourceName.toLowerCase() !== strategyLabel(a.strategy).toLowerCase() ? ` · ${sourceName}` : "";
      this.strategyEl.textContent = `${strategyLabel(a.strategy)}${source}`;
      this.strategyEl.hidden = false;
      this.panel.dataset.strategy = a.strategy;
    }
    const total = Number(a.total_tasks) || 0;
    const done = Number(a.completed_tasks) || 0;
    const failed = Number(a.failed_tasks) || 0;
    if (total > 0) {
      this.bar.style.width = `${Math.min(100, (done / total) * 100)}%`;
      this.track.setAttribute("aria-valuemax", String(total));
      this.track.setAttribute("aria-valuenow", String(done));
      this.progressLabel.textContent = `${done} / ${total} tasks${failed ? ` · ${failed} failed` : ""}`;
    }
    const results = a.results ?? [];
    for (const r of results) this.card(r.subagent_run_id, r.label).applyResult(r);
    const tokens = results.reduce((sum, r) => sum + taskTokens(r.usage), 0);
    if (tokens) this.tokensEl.textContent = `${number.format(tokens)} tokens`;
    this.notesEl.replaceChildren(...(a.notes ?? []).map((note) => h("li", "", note)));
    const view = roomView(this.activityType, a);
    if (view) this.roomEl.replaceChildren(view);
  }

  /** `RUN_FINISHED.result.votes` of a voting run: the tally, the winner and the agreement. */
  renderVotes(votes) {
    const tally = votes.tally ?? [];
    const most = Math.max(1, ...tally.map((t) => t.votes));
    this.votesEl.replaceChildren(
      ...tally.map((t) => {
        const row = h("div", `vote-row${t.answer === votes.answer ? " winner" : ""}`);
        const label = h("span", "vote-label", t.answer);
        label.title = t.answer;
        const track = h("div", "vote-track");
        const bar = h("div", "vote-bar");
        bar.style.width = `${(t.votes / most) * 100}%`;
        track.append(bar);
        row.append(label, track, h("span", "vote-count", number.format(t.votes)));
        return row;
      }),
    );
    const tie = votes.tie_break?.method ? ` · tie broken by ${votes.tie_break.method === "judge" ? "a judge" : "the first voter"}` : "";
    this.agreementEl.replaceChildren(
      `${votes.valid} of ${votes.voters} valid votes${tie} · agreement `,
      h("strong", "", `${Math.round(votes.agreement * 100)}%`),
    );
    this.votesBlock.hidden = false;
  }

  queueAnswerRender() {
    if (this.renderQueued) return;
    this.renderQueued = true;
    requestAnimationFrame(() => this.renderAnswer());
  }

  renderAnswer() {
    this.renderQueued = false;
    this.answerEl.innerHTML = renderMarkdown(this.answer);
    followOutput();
  }

  finish(event) {
    const result = event.result && typeof event.result === "object" ? event.result : {};
    if (!this.answer && typeof result.text === "string") {
      this.answer = result.text;
      this.answerBlock.hidden = false;
    }
    this.renderAnswer();
    if (result.votes) this.renderVotes(result.votes);
    const tokens = runTokens(event.usage);
    if (tokens) this.tokensEl.textContent = `${number.format(tokens)} tokens`;
    this.end("complete");
  }

  showError(title, message, code) {
    this.errorEl.replaceChildren(h("strong", "", title), message);
    if (code) this.errorEl.append(" ", h("code", "", code));
    this.errorEl.hidden = false;
  }

  fail(title, message, code) {
    this.showError(title, message, code);
    this.end("failed");
  }

  stopped() {
    for (const card of this.cards.values()) {
      if (["running", "pending"].includes(card.root.dataset.status)) card.setStatus("stopped");
    }
    this.showError("Stopped", "This run was stopped; its model calls were cancelled on the server.");
    this.end("stopped");
  }

  end(outcome) {
    if (this.ended) return;
    this.ended = true;
    this.state = outcome;
    this.panel.dataset.state = outcome;
    if (outcome !== "complete" || !this.activity) this.setPhase(outcome);
    // A run with no parallel tasks (a follow-up answered from the thread) has no progress to show.
    if (!(Number(this.activity?.total_tasks) > 0)) this.progressRow.hidden = true;
    clearInterval(this.tick);
    this.showElapsed();
  }

  /** A replayed run took as long as its stored record says, not as long as its replay. */
  setDuration(created, finished) {
    const ms = Date.parse(finished) - Date.parse(created);
    if (!Number.isFinite(ms)) return;
    this.showElapsed = () => {
      this.elapsedEl.textContent = `${(ms / 1000).toFixed(1)} s`;
    };
    this.showElapsed();
  }
}

// ---- Sending a run -----------------------------------------------------------------------------

class HttpError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function httpError(resp) {
  let code;
  let message = `${resp.status} ${resp.statusText}`.trim();
  try {
    const body = await resp.json();
    if (body?.error?.message) ({ code, message } = body.error);
  } catch {
    // Not JSON (a proxy's error page, say): the status line is all there is.
  }
  return new HttpError(resp.status, code, message);
}

// The room's strategies as GET /rooms lists them: name, label, description.
function roomStrategies() {
  return state.room?.agent?.strategies ?? [];
}

function strategyLabel(name) {
  return roomStrategies().find((s) => s.name === name)?.label ?? name;
}

// Auto, then one choice per strategy of the room; no picker for a room without strategies.
function buildStrategyPicker() {
  const picker = ui.strategyPicker;
  const [legend, auto] = picker.children;
  const choices = roomStrategies().map((s) => {
    const label = h("label");
    label.title = s.description ?? "";
    const input = h("input");
    input.type = "radio";
    input.name = "strategy";
    input.value = s.name;
    label.append(input, h("span", undefined, s.label ?? s.name));
    return label;
  });
  picker.replaceChildren(legend, auto, ...choices);
  auto.querySelector("input").checked = true;
  picker.hidden = choices.length === 0;
}

function selectedStrategy() {
  return ui.form.querySelector('input[name="strategy"]:checked')?.value ?? "";
}

async function sendMessage(text) {
  const prompt = text.trim();
  if (!prompt || !state.room || state.active) return;
  const strategy = selectedStrategy();
  const userMessage = { id: uuid(), role: "user", content: prompt };
  const body = {
    threadId: state.threadId,
    runId: uuid(),
    // The full AG-UI 1.0 stream: subagents with their own text messages (see README, Clients).
    protocolVersion: "1.0",
    messages: [...state.history, userMessage],
    tools: [],
    context: [],
    state: {},
    ...(strategy ? { forwardedProps: { strategy } } : {}),
  };

  ui.welcome.hidden = true;
  const view = new RunView(prompt);
  ui.transcript.append(view.root);
  state.followOutput = true;
  followOutput();
  setThreadInUrl(state.threadId);
  const post = (signal) =>
    fetch(`/rooms/${encodeURIComponent(state.room.id)}/run`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "text/event-stream", ...authHeaders() },
      body: JSON.stringify(body),
      signal,
    });
  await streamRun(view, body.runId, post);
  if (view.state === "complete") {
    state.history.push(userMessage, { id: uuid(), role: "assistant", content: view.answer });
  }
  refreshThreads();
}

/** Tries to resume a broken stream this many times, waiting longer each time. */
const RESUME_TRIES = 4;

/**
 * Streams a run into its view: `open(signal)` starts the stream; should it break before the run's
 * last event, the rest is followed from the events route after the last event id received.
 */
async function streamRun(view, runId, open) {
  const controller = new AbortController();
  state.active = { view, controller, runId };
  setBusy(true);
  let lastId = null;
  const events = (resp) => sseJson(resp.body, (id) => (lastId = id));
  try {
    const resp = await open(controller.signal);
    if (!resp.ok) throw await httpError(resp);
    for await (const event of events(resp)) {
      view.handle(event);
      followOutput();
    }
    for (let attempt = 0; !view.ended && attempt < RESUME_TRIES; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 500 * 2 ** attempt));
      if (controller.signal.aborted) break;
      try {
        const resumed = await fetch(eventsUrl(runId), {
          headers: { ...authHeaders(), ...(lastId ? { "Last-Event-ID": lastId } : {}) },
          signal: controller.signal,
        });
        if (!resumed.ok) break;
        for await (const event of events(resumed)) {
          view.handle(event);
          followOutput();
        }
      } catch (e) {
        if (controller.signal.aborted) throw e;
      }
    }
    if (!view.ended) {
      view.fail("The stream ended early", "The connection closed before the run finished and it could not be resumed. Try again.");
    }
  } catch (e) {
    if (controller.signal.aborted) view.stopped();
    else if (e instanceof HttpError) view.fail(`The server refused the run (HTTP ${e.status})`, e.message, e.code);
    else if (e instanceof TypeError) view.fail("Could not reach the server", `${e.message}. Check that roomhost is running.`);
    else view.fail("The run failed", e.message);
  } finally {
    state.active = null;
    setBusy(false);
    followOutput();
    checkServer();
  }
}

function eventsUrl(runId) {
  return `/rooms/${encodeURIComponent(state.room.id)}/runs/${encodeURIComponent(runId)}/events`;
}

/** Stop: the server cancels the run (its stream then ends with a `cancelled` error); a server
 * without the route (or that lost the run) is left by closing the stream. */
async function stopRun() {
  const active = state.active;
  if (!active) return;
  try {
    const url = `/rooms/${encodeURIComponent(state.room.id)}/runs/${encodeURIComponent(active.runId)}/cancel`;
    const resp = await fetch(url, { method: "POST", headers: authHeaders() });
    if (resp.ok) return;
  } catch {
    // Unreachable: closing the stream is all that is left.
  }
  active.controller.abort();
}

function setBusy(busy) {
  ui.send.disabled = busy || state.backendDown;
  ui.stop.hidden = !busy;
  for (const chip of ui.suggestions.querySelectorAll("button")) chip.disabled = busy || state.backendDown;
}

function followOutput() {
  if (state.followOutput) ui.transcript.scrollTop = ui.transcript.scrollHeight;
}

// ---- Rooms -------------------------------------------------------------------------------------

function clearTranscript() {
  state.active?.controller.abort();
  state.history = [];
  for (const turn of ui.transcript.querySelectorAll(".turn")) turn.remove();
}

function newChat() {
  clearTranscript();
  state.threadId = uuid();
  ui.welcome.hidden = false;
  if (state.room) setThreadInUrl(null);
  markCurrentThread();
}

/** The room and thread in the address, so a reload comes back to them. */
function setThreadInUrl(threadId) {
  const params = new URLSearchParams({ room: state.room.id });
  if (threadId) params.set("thread", threadId);
  history.replaceState(null, "", `#${params}`);
}

// ---- Threads -----------------------------------------------------------------------------------

/** The room's threads in the sidebar, newest first; hidden when the server keeps none. */
async function refreshThreads() {
  if (!state.room) return;
  let body;
  try {
    const resp = await fetch(`/rooms/${encodeURIComponent(state.room.id)}/threads?limit=30`, { headers: authHeaders() });
    if (!resp.ok) throw await httpError(resp);
    body = await resp.json();
  } catch {
    ui.threadsTitle.hidden = ui.threads.hidden = true;
    return;
  }
  ui.threadsTitle.hidden = ui.threads.hidden = false;
  ui.threads.replaceChildren(
    ...body.threads.map((t) => {
      const name = t.metadata?.name || "Untitled thread";
      const button = h("button", "thread", name);
      button.type = "button";
      button.dataset.thread = t.thread_id;
      button.title = new Date(t.created).toLocaleString();
      button.addEventListener("click", () => {
        if (t.thread_id !== state.threadId || state.active) openThread(t.thread_id);
      });
      const remove = h("button", "thread-delete", "×");
      remove.type = "button";
      remove.title = "Delete this thread";
      remove.setAttribute("aria-label", `Delete thread ${name}`);
      remove.addEventListener("click", () => deleteThread(t.thread_id, name));
      const row = h("div", "thread-row");
      row.append(button, remove);
      return row;
    }),
  );
  if (!body.threads.length) ui.threads.replaceChildren(h("p", "muted small", "No threads yet."));
  markCurrentThread();
}

/** Deletes a thread and its runs on the server, once the user confirms. */
async function deleteThread(threadId, name) {
  if (!confirm(`Delete "${name}" and all its runs? This cannot be undone.`)) return;
  try {
    const resp = await fetch(`/rooms/${encodeURIComponent(state.room.id)}/threads/${encodeURIComponent(threadId)}`, {
      method: "DELETE",
      headers: authHeaders(),
    });
    if (!resp.ok && resp.status !== 404) throw await httpError(resp);
  } catch (e) {
    alert(`The thread could not be deleted: ${e.message}`);
    return;
  }
  if (threadId === state.threadId) newChat();
  refreshThreads();
}

function markCurrentThread() {
  for (const button of ui.threads.querySelectorAll(".thread")) {
    button.setAttribute("aria-current", String(button.dataset.thread === state.threadId));
  }
}

/** The last user message's text of a stored run input. */
function promptOf(input) {
  const user = (input?.messages ?? []).filter((m) => m.role === "user").at(-1);
  if (!user) return "";
  if (typeof user.content === "string") return user.content;
  return (user.content ?? []).map((p) => p.text ?? "").join("\n");
}

/**
 * Opens a stored thread: each run replayed from its events (answers and final activity); a run still
 * going is followed live from where it is.
 */
async function openThread(threadId) {
  clearTranscript();
  state.threadId = threadId;
  setThreadInUrl(threadId);
  markCurrentThread();
  const room = encodeURIComponent(state.room.id);
  let thread;
  try {
    const resp = await fetch(`/rooms/${room}/threads/${encodeURIComponent(threadId)}`, { headers: authHeaders() });
    if (!resp.ok) throw await httpError(resp);
    thread = await resp.json();
  } catch {
    // Gone (deleted, or a server without a store): start it afresh under the same id.
    ui.welcome.hidden = false;
    return;
  }
  ui.welcome.hidden = thread.runs.length > 0;
  for (const run of thread.runs) {
    if (state.threadId !== threadId) return; // another thread was opened meanwhile
    let prompt = "";
    let record = {};
    try {
      const resp = await fetch(`/rooms/${room}/runs/${encodeURIComponent(run.run_id)}`, { headers: authHeaders() });
      if (resp.ok) record = await resp.json();
      prompt = promptOf(record.run_input);
    } catch {
      // The prompt is only a heading; the events still show the run.
    }
    const view = new RunView(prompt);
    if (record.finished) view.setDuration(record.created, record.finished);
    ui.transcript.append(view.root);
    await streamRun(view, run.run_id, (signal) => fetch(eventsUrl(run.run_id), { signal, headers: authHeaders() }));
    if (view.state === "complete") {
      state.history.push(
        { id: uuid(), role: "user", content: prompt },
        { id: uuid(), role: "assistant", content: view.answer },
      );
    }
  }
}

function selectRoom(room, threadId) {
  state.room = room;
  if (threadId) openThread(threadId);
  else newChat();
  refreshThreads();
  ui.roomName.textContent = room.name || room.id;
  ui.roomDescription.textContent = room.description ?? "";
  ui.welcomeText.textContent = room.welcome_message || "Pick a suggestion below or write your own message.";
  for (const button of ui.rooms.querySelectorAll(".room")) {
    button.setAttribute("aria-current", String(button.dataset.room === room.id));
  }
  buildStrategyPicker();
  ui.suggestions.replaceChildren(
    ...(room.suggestions ?? []).map((s) => {
      const chip = h("button", "chip", s);
      chip.type = "button";
      chip.disabled = Boolean(state.active) || state.backendDown;
      chip.addEventListener("click", () => sendMessage(s));
      return chip;
    }),
  );
  ui.prompt.focus();
}

// ---- Sign-in: a key or token kept in this browser, sent as a bearer token ------------------------

const TOKEN_KEY = "roomhost.token";
const tokenInput = $("api-token");
tokenInput.value = localStorage.getItem(TOKEN_KEY) ?? "";
tokenInput.addEventListener("change", () => {
  localStorage.setItem(TOKEN_KEY, tokenInput.value.trim());
  loadRooms();
});

function authHeaders() {
  const token = localStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function loadRooms() {
  try {
    const resp = await fetch("/rooms", { headers: authHeaders() });
    if (!resp.ok) throw await httpError(resp);
    state.rooms = await resp.json();
  } catch (e) {
    ui.rooms.replaceChildren(h("p", "muted small", `Could not load the rooms: ${e.message}`));
    return;
  }
  if (!state.rooms.length) {
    ui.rooms.replaceChildren(h("p", "muted small", "No rooms are configured on this server."));
    return;
  }
  ui.rooms.replaceChildren(
    ...state.rooms.map((room) => {
      const button = h("button", "room");
      button.type = "button";
      button.dataset.room = room.id;
      button.append(h("span", "room-name", room.name || room.id), h("span", "room-desc", room.description ?? ""));
      button.addEventListener("click", () => {
        if (state.room?.id !== room.id) selectRoom(room);
      });
      return button;
    }),
  );
  const wanted = new URLSearchParams(location.hash.slice(1));
  const room = state.rooms.find((r) => r.id === wanted.get("room"));
  selectRoom(room ?? state.rooms[0], room ? wanted.get("thread") : null);
}

/** While no LLM backend answers, how often the page asks again. */
const RECHECK_MS = 5000;
let recheck;

/** The backend's state from /readyz; while it is down Send is disabled, with a Retry button. */
async function checkServer() {
  clearTimeout(recheck);
  let llm;
  let text;
  let reason = "";
  try {
    const resp = await fetch("/readyz");
    const body = await resp.json();
    llm = resp.ok ? "ok" : body.llm;
    reason = body.reason ?? "";
    text = resp.ok ? "LLM backend ready" : `Not ready: ${reason || resp.status}`;
    if (llm?.error) text = "The LLM backend does not answer";
  } catch {
    text = "Server unreachable";
  }
  ui.status.title = reason;
  ui.statusHint.textContent = llm?.hint ? `${reason}. To fix: ${llm.hint}` : "";
  ui.statusHint.hidden = !llm?.hint;
  // Only a backend that does not answer blocks Send; a failing store or a shutdown does not.
  state.backendDown = llm !== "ok" && (llm === undefined || Boolean(llm?.error));
  ui.status.dataset.state = llm === "ok" ? "ready" : "down";
  ui.status.querySelector(".label").textContent = text;
  ui.retry.hidden = !state.backendDown;
  setBusy(Boolean(state.active));
  if (state.backendDown) recheck = setTimeout(checkServer, RECHECK_MS);
}

// ---- Wiring ------------------------------------------------------------------------------------

function submitComposer() {
  if (state.active || !ui.prompt.value.trim()) return;
  const text = ui.prompt.value;
  ui.prompt.value = "";
  sendMessage(text);
}

ui.form.addEventListener("submit", (e) => {
  e.preventDefault();
  submitComposer();
});
ui.prompt.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    submitComposer();
  }
});
ui.stop.addEventListener("click", stopRun);
ui.retry.addEventListener("click", checkServer);
ui.newChat.addEventListener("click", newChat);
ui.transcript.addEventListener("scroll", () => {
  const t = ui.transcript;
  state.followOutput = t.scrollHeight - t.scrollTop - t.clientHeight < 80;
});

loadRooms();
checkServer();
