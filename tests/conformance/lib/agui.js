// Runs roomhost's SSE streams through the official AG-UI client (`HttpAgent` from @ag-ui/client)
// and checks what that client does not: every event against @ag-ui/core's schemas with nothing
// stripped, exactly one terminal event, the activity's snapshot + deltas against the server's own
// final state, subagents and the final answer against RUN_FINISHED.result.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";

import { HttpAgent } from "@ag-ui/client";
import { EventSchemas } from "@ag-ui/core/schemas";
import jsonpatch from "fast-json-patch";

/** The client every suite uses unless it names another generation (lib/clients.js). */
export const CURRENT = { name: "@ag-ui/client 1.0.0", HttpAgent, EventSchemas, profile: "full" };

import { sseJson } from "../../../web/sse.js";

const TERMINAL = new Set(["RUN_FINISHED", "RUN_ERROR"]);

/**
 * One run through `HttpAgent`. Returns the raw wire events (read from a tee of the response body),
 * the events the client delivered, the client's failure (HTTP error, schema or verifier error) and
 * everything it wrote to console.warn / console.error.
 */
export async function runAgent(url, { messages, forwardedProps, client = CURRENT }) {
  const raw = [];
  let rawRead = Promise.resolve();
  let contentType;
  const realFetch = globalThis.fetch;
  globalThis.fetch = async (input, init) => {
    const resp = await realFetch(input, init);
    contentType = resp.headers.get("content-type");
    if (!resp.ok || !resp.body) return resp;
    const [mine, theirs] = resp.body.tee();
    rawRead = (async () => {
      for await (const event of sseJson(mine)) raw.push(event);
    })();
    return new Response(theirs, { status: resp.status, statusText: resp.statusText, headers: resp.headers });
  };
  const console_ = [];
  const real = { warn: console.warn, error: console.error };
  console.warn = (...args) => console_.push(["warn", args.map(String).join(" ")]);
  console.error = (...args) => console_.push(["error", args.map(String).join(" ")]);

  const agent = new client.HttpAgent({ url, threadId: randomUUID() });
  agent.setMessages(messages.map((m) => ({ id: randomUUID(), ...m })));
  const delivered = [];
  let failure;
  let result;
  try {
    ({ result } = await agent.runAgent(
      { runId: randomUUID(), forwardedProps },
      {
        onEvent: ({ event }) => {
          delivered.push(event);
        },
        // Recorded instead of thrown so that the client writes nothing to the console itself.
        onRunFailed: ({ error }) => {
          failure = error;
          return { stopPropagation: true };
        },
      },
    ));
    await rawRead;
  } finally {
    globalThis.fetch = realFetch;
    Object.assign(console, real);
  }
  return { raw, delivered, failure, console: console_, agent, result, contentType, client };
}

export const ask = (url, prompt, forwardedProps, client) =>
  runAgent(url, { messages: [{ role: "user", content: prompt }], forwardedProps, client });

// @ag-ui/core's schemas pass unknown fields through (the client strips them later, with a warning):
// a strict copy of each event type's schema names them here.
const STRICT = new Map(EventSchemas.options.map((schema) => [schema.shape.type.value, schema.strict()]));

/** Checks that hold for every stream the client accepted; returns the terminal event. */
export function checkStream(run) {
  assert.equal(run.failure, undefined, `the client rejected the run: ${run.failure?.stack ?? run.failure}`);
  assert.deepEqual(run.console, [], "the client wrote warnings or errors to the console");
  assert.match(run.contentType ?? "", /^text\/event-stream/);
  assert.ok(run.raw.length > 0, "no events");

  for (const [i, event] of run.raw.entries()) {
    const parsed = EventSchemas.safeParse(event);
    assert.ok(parsed.success, `event ${i} ${JSON.stringify(event)} fails @ag-ui/core's schema: ${parsed.error}`);
    const own = run.client.EventSchemas.safeParse(event);
    assert.ok(own.success, `event ${i} ${JSON.stringify(event)} fails ${run.client.name}'s schema: ${own.error}`);
    const strict = STRICT.get(event.type).safeParse(event);
    assert.ok(strict.success, `event ${i} ${JSON.stringify(event)} has fields AG-UI does not define: ${strict.error}`);
  }
  assert.deepEqual(
    run.delivered.map((e) => e.type),
    run.raw.map((e) => e.type),
    "the client delivered other events than the server sent",
  );

  assert.equal(run.raw[0].type, "RUN_STARTED");
  const terminals = run.raw.filter((e) => TERMINAL.has(e.type));
  assert.equal(terminals.length, 1, `expected exactly one RUN_FINISHED or RUN_ERROR, got ${terminals.length}`);
  const last = run.raw[run.raw.length - 1];
  assert.ok(TERMINAL.has(last.type), `the stream ends with ${last.type}`);
  checkActivity(run, last);
  checkSubagents(run);
  return last;
}

/** The run's activity (any room's) rebuilt from its snapshot and deltas with fast-json-patch. */
export function rebuiltActivity(events) {
  let id;
  let content;
  for (const e of events) {
    if (e.type === "ACTIVITY_SNAPSHOT") {
      assert.equal(id ?? e.messageId, e.messageId, "a second activity message in one run");
      id = e.messageId;
      content = structuredClone(e.content);
    } else if (e.type === "ACTIVITY_DELTA" && e.messageId === id) {
      content = jsonpatch.applyPatch(content, e.patch, true, false).newDocument;
    } else if (e.type === "ACTIVITY_DELTA") {
      assert.fail(`ACTIVITY_DELTA for ${e.messageId} before its snapshot`);
    }
  }
  return { id, content };
}

function checkActivity(run, last) {
  const { id, content } = rebuiltActivity(run.raw);
  if (id === undefined) return;
  const clients = run.agent.messages.find((m) => m.id === id);
  assert.equal(clients?.role, "activity", "the client keeps no activity message");
  assert.deepEqual(clients.content, content, "the client's activity differs from snapshot + deltas");
  if (last.type === "RUN_FINISHED") {
    assert.deepEqual(content, last.result.activity, "snapshot + deltas differ from RUN_FINISHED.result.activity");
  }
  assert.equal(content.status, last.type === "RUN_FINISHED" ? "complete" : "failed");
  assert.equal(content.total_tasks, content.results.length);
  const count = (status) => content.results.filter((r) => r.status === status).length;
  assert.equal(content.completed_tasks, count("complete"));
  assert.equal(content.failed_tasks, count("failed"));
}

function checkSubagents(run) {
  if (run.client.profile === "legacy") {
    // The legacy profile keeps subagents out of the stream: their tasks are in the activity only.
    assert.ok(run.raw.every((e) => !e.type.startsWith("SUBAGENT") && e.subagentRunId === undefined));
    return;
  }
  const started = run.raw.filter((e) => e.type === "SUBAGENT_STARTED").map((e) => e.subagentRunId);
  const ended = new Map(
    run.raw
      .filter((e) => e.type === "SUBAGENT_FINISHED" || e.type === "SUBAGENT_ERROR")
      .map((e) => [e.subagentRunId, e.type]),
  );
  assert.equal(new Set(started).size, started.length, "a subagentRunId started twice");
  const terminal = run.raw[run.raw.length - 1];
  if (terminal.type === "RUN_FINISHED") {
    assert.deepEqual([...ended.keys()].sort(), [...started].sort(), "subagents left open or never started");
  }
  const { content } = rebuiltActivity(run.raw);
  for (const r of content?.results ?? []) {
    const expected = { complete: "SUBAGENT_FINISHED", failed: "SUBAGENT_ERROR" }[r.status];
    if (expected) assert.equal(ended.get(r.subagent_run_id), expected, `task ${r.label} is ${r.status}`);
  }
}

/** The final answer: the one text message without a subagentRunId. */
export function finalAnswer(events) {
  const starts = events.filter((e) => e.type === "TEXT_MESSAGE_START" && e.subagentRunId === undefined);
  assert.equal(starts.length, 1, "expected one final answer message");
  const id = starts[0].messageId;
  const text = events
    .filter((e) => e.type === "TEXT_MESSAGE_CONTENT" && e.messageId === id)
    .map((e) => e.delta)
    .join("");
  return { id, text };
}

/** A successful run: conformance, the answer in RUN_FINISHED.result, the client's messages. */
export function checkFinished(run) {
  const last = checkStream(run);
  assert.equal(last.type, "RUN_FINISHED", `the run failed: ${JSON.stringify(last)}`);
  const { id, text } = finalAnswer(run.raw);
  assert.ok(text.length > 0, "empty answer");
  assert.equal(last.result.text, text, "RUN_FINISHED.result.text differs from the streamed answer");
  assert.deepEqual(run.result, last.result, "runAgent() returned another result");
  const answer = run.agent.messages.find((m) => m.id === id);
  assert.equal(answer?.role, "assistant");
  assert.equal(answer.content, text, "the client's assistant message differs from the answer");
  return last.result;
}

/** A run that started and then failed: conformance and a readable RUN_ERROR. */
export function checkRunError(run, code) {
  const last = checkStream(run);
  assert.equal(last.type, "RUN_ERROR", `expected RUN_ERROR, got ${JSON.stringify(last)}`);
  assert.ok(last.message.length > 10, `unhelpful message: ${last.message}`);
  if (code) assert.equal(last.code, code, last.message);
  else assert.ok(last.code, "RUN_ERROR without a code");
  return last;
}
