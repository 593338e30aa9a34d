// roomhost behind a CopilotKit runtime: @copilotkit/runtime 1.75.0 with the parallelization room
// registered as an AG-UI HttpAgent (@ag-ui/client 0.0.59, the runtime's pin), served by the
// runtime's own Node listener, and driven by CopilotKit's frontend core (@copilotkit/core 1.74.0,
// the `CopilotKitCore` that @copilotkit/react-core 1.74.0's <CopilotKit> provider wraps). Each run
// is sent the way react-core's <CopilotChat> sends a typed message or a clicked suggestion
// (react-core 1.74.0 dist/copilotkit-*.mjs, `onSubmitInput` / `handleSelectSuggestion`):
// `agent.addMessage({id, role: "user", content})`, then `copilotkit.runAgent({agent})`.
// roomhost's own stream is read from a tee of the runtime's request to it, so the answer the
// frontend ends with is compared with what roomhost sent.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { createServer } from "node:http";
import { after, afterEach, before, test } from "node:test";

// No telemetry (the runtime posts to telemetry.copilotkit.ai otherwise): its client reads these
// when its module loads, hence the dynamic imports below.
process.env.COPILOTKIT_TELEMETRY_DISABLED = "true";
process.env.DO_NOT_TRACK = "1";

const { HttpAgent } = await import("@ag-ui/client");
const { CopilotKitCore, CopilotKitCoreErrorCode } = await import("@copilotkit/core");
const { CopilotRuntime } = await import("@copilotkit/runtime/v2");
const { createCopilotNodeListener } = await import("@copilotkit/runtime/v2/node");
const { startMockLlm, startRoomhost } = await import("../../conformance/lib/servers.js");
const { sseJson } = await import("../../../web/sse.js");

const AGENT = "parallelization";

let mock;
let host;
let runtimeServer;
let runtimeUrl;
/** Per request the runtime made to roomhost: the events roomhost sent, once its stream ended. */
let roomhostStreams = [];
/** Requests to anywhere but loopback: there must be none (no telemetry, no license check). */
const offHost = [];

// Tees roomhost's responses, and refuses any request that would leave the machine. Both the
// runtime's HttpAgent and the frontend's agent fetch through the global fetch.
const realFetch = globalThis.fetch;
globalThis.fetch = async (input, init) => {
  const url = new URL(input instanceof Request ? input.url : String(input));
  if (url.hostname !== "127.0.0.1" && url.hostname !== "localhost") {
    offHost.push(url.href);
    throw new Error(`no network in this test: ${url.href}`);
  }
  const resp = await realFetch(input, init);
  if (!host || url.origin !== host.url || !resp.ok || !resp.body) return resp;
  const [mine, theirs] = resp.body.tee();
  roomhostStreams.push(readAll(sseJson(mine)));
  return new Response(theirs, { status: resp.status, statusText: resp.statusText, headers: resp.headers });
};

async function readAll(events) {
  const all = [];
  for await (const event of events) all.push(event);
  return all;
}

before(async () => {
  mock = await startMockLlm();
  host = await startRoomhost(mock.url);
  const runtime = new CopilotRuntime({
    agents: { [AGENT]: new HttpAgent({ url: `${host.url}/rooms/${AGENT}/run` }) },
  });
  const listener = createCopilotNodeListener({ runtime, basePath: "/api/copilotkit", activateChannels: false });
  runtimeServer = createServer(listener);
  await new Promise((resolve) => runtimeServer.listen(0, "127.0.0.1", resolve));
  runtimeUrl = `http://127.0.0.1:${runtimeServer.address().port}/api/copilotkit`;
});

afterEach(async () => {
  roomhostStreams = [];
  await mock.reset();
});

after(async () => {
  runtimeServer?.closeAllConnections();
  await new Promise((resolve) => (runtimeServer ? runtimeServer.close(resolve) : resolve()));
  await host?.stop();
  await mock?.stop();
  globalThis.fetch = realFetch;
  assert.deepEqual(offHost, [], "something tried to reach the network");
});

/**
 * A frontend core with roomhost's agent. CopilotKitCore discovers the runtime's agents (`GET
 * {runtimeUrl}/info`) only in a browser (@copilotkit/core 1.74.0 dist/index.mjs, AgentRegistry
 * `updateRuntimeConnection`: `if (typeof window === "undefined") return`), so here the agent comes
 * from `registerProxiedAgent`: the same ProxiedCopilotRuntimeAgent discovery makes, which reads
 * `/info` itself before its first run and then POSTs to `{runtimeUrl}/agent/{id}/run`.
 */
function connect(properties) {
  // `properties` is the <CopilotKit properties> prop: the runs' forwardedProps.
  const copilotkit = new CopilotKitCore({ runtimeUrl, properties });
  const errors = [];
  copilotkit.subscribe({ onError: ({ error, code }) => errors.push({ code, message: error.message }) });
  const { agent } = copilotkit.registerProxiedAgent({ agentId: "chat", runtimeAgentId: AGENT });
  return { copilotkit, agent, errors };
}

/** One chat turn as <CopilotChat> sends it; the frontend's messages and errors after it. */
async function chat(prompt, properties) {
  const { copilotkit, agent, errors } = connect(properties);
  agent.addMessage({ id: randomUUID(), role: "user", content: prompt });
  const run = await copilotkit.runAgent({ agent });
  return { run, messages: agent.messages, errors };
}

/** roomhost's one stream for the run. */
function roomhostStream() {
  assert.equal(roomhostStreams.length, 1, "expected one stream from roomhost");
  return roomhostStreams[0];
}

/** The room's suggestions, one per strategy, from roomhost itself. */
async function suggestions() {
  const resp = await realFetch(`${host.url}/rooms/${AGENT}`);
  assert.equal(resp.status, 200);
  return (await resp.json()).suggestions;
}

test("the runtime lists roomhost's agent, as the frontend's discovery reads it", async () => {
  const resp = await realFetch(`${runtimeUrl}/info`);
  assert.equal(resp.status, 200);
  const info = await resp.json();
  assert.deepEqual(Object.keys(info.agents), [AGENT]);
});

test("each of the room's suggestions, one per strategy, through the runtime", async (t) => {
  const prompts = await suggestions();
  assert.equal(prompts.length, 3);
  const strategies = [];
  for (const prompt of prompts) {
    await t.test(prompt, async () => {
      roomhostStreams = [];
      const { run, messages, errors } = await chat(prompt);
      assert.deepEqual(errors, []);
      const events = await roomhostStream();
      const finished = events.at(-1);
      assert.equal(finished.type, "RUN_FINISHED", JSON.stringify(finished));

      // The runtime's HttpAgent (@ag-ui/client 0.0.59) sends no protocolVersion: the legacy profile.
      assert.ok(events.every((e) => !e.type.startsWith("SUBAGENT_")), "a SUBAGENT_* event in the stream");
      const starts = events.filter((e) => e.type === "TEXT_MESSAGE_START");
      assert.equal(starts.length, 1, "the legacy profile has one text message: the answer");
      const text = events
        .filter((e) => e.type === "TEXT_MESSAGE_CONTENT")
        .map((e) => e.delta)
        .join("");
      assert.ok(text.length > 0, "an empty answer");
      assert.equal(finished.result.text, text);

      // The frontend ends with the answer roomhost sent, as one assistant message, and the result.
      const answers = messages.filter((m) => m.role === "assistant");
      assert.deepEqual(
        answers.map((m) => [m.id, m.content]),
        [[starts[0].messageId, text]],
      );
      assert.deepEqual(run.result, finished.result, "runAgent() returned another result");
      // The fan-out's activity message reaches the frontend with roomhost's final content.
      const activity = messages.find((m) => m.role === "activity");
      assert.equal(activity?.activityType, "parallelization");
      assert.deepEqual(activity.content, finished.result.activity);
      strategies.push(finished.result.strategy);
    });
  }
  assert.deepEqual(strategies, ["sectioning", "voting", "map_reduce"]);
});

test("a failing run reaches the frontend as an error, not a hang", async () => {
  await mock.mode({ mode: "fail_status", status: 503 });
  const { run, messages, errors } = await chat("Is remote work better than office work?");
  const events = await roomhostStream();
  const failed = events.at(-1);
  assert.equal(failed.type, "RUN_ERROR", JSON.stringify(failed));
  assert.deepEqual(
    errors.map((e) => [e.code, e.message]),
    [[CopilotKitCoreErrorCode.AGENT_RUN_ERROR_EVENT, failed.message]],
  );
  assert.equal(run.result, undefined);
  assert.deepEqual(
    messages.filter((m) => m.role === "assistant"),
    [],
  );
});

test("a request roomhost refuses reaches the frontend as an error with roomhost's reason", async () => {
  // The runtime logs the agent's failure to the console: kept for the failure message only.
  const logged = [];
  const realError = console.error;
  console.error = (...args) => logged.push(args.map(String).join(" "));
  let turn;
  try {
    turn = await chat("Tell me about green tea.", { strategy: "guessing" });
  } finally {
    console.error = realError;
  }
  assert.deepEqual(roomhostStreams, [], "roomhost answered 400 before any stream");
  assert.equal(turn.errors.length, 1, JSON.stringify({ errors: turn.errors, logged }));
  const [error] = turn.errors;
  assert.equal(error.code, CopilotKitCoreErrorCode.AGENT_RUN_ERROR_EVENT);
  assert.match(error.message, /^HTTP 400: .*unknown strategy 'guessing' in forwardedProps\.strategy/);
  assert.equal(turn.run.result, undefined);
});
