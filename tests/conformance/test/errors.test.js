// Failures through HttpAgent: refused before the stream (HTTP error) or ended by RUN_ERROR, and
// partial failures that still finish. Every stream must stay conformant.

import assert from "node:assert/strict";
import { after, afterEach, before, test } from "node:test";

import { ask, checkFinished, checkRunError } from "../lib/agui.js";
import { freePort, startMockLlm, startRoomhost } from "../lib/servers.js";

let mock;
let host;
let url;

before(async () => {
  mock = await startMockLlm();
  host = await startRoomhost(mock.url);
  url = `${host.url}/rooms/parallelization/run`;
});

afterEach(() => mock.reset());

after(async () => {
  await host?.stop();
  await mock?.stop();
});

test("an unknown room is an HTTP 404 with a JSON error, before any event", async () => {
  const run = await ask(`${host.url}/rooms/no-such-room/run`, "Hello?");
  assert.equal(run.failure?.status, 404, String(run.failure));
  assert.equal(run.failure.payload.error.code, "room_not_found");
  assert.deepEqual(run.raw, []);
  assert.deepEqual(run.console, []);
});

test("an unknown strategy is an HTTP 400 naming the valid ones", async () => {
  const run = await ask(url, "Hello?", { strategy: "guessing" });
  assert.equal(run.failure?.status, 400, String(run.failure));
  assert.match(run.failure.payload.error.message, /sectioning, voting, map_reduce or follow_up/);
});

test("a backend nobody listens on ends the run with RUN_ERROR", async () => {
  const closed = await freePort();
  const lonely = await startRoomhost(`http://127.0.0.1:${closed}`, { ROOMHOST_CONNECT_TIMEOUT_SECS: "2" });
  try {
    checkRunError(await ask(`${lonely.url}/rooms/parallelization/run`, "Is tea better than coffee?"));
  } finally {
    await lonely.stop();
  }
});

test("a backend answering HTTP 503 to every call ends the run with RUN_ERROR", async () => {
  await mock.mode({ mode: "fail_status", status: 503 });
  checkRunError(await ask(url, "Write about AI ethics: Privacy, Bias, Transparency"));
});

test("a backend failing mid-stream on every call ends the run with RUN_ERROR", async () => {
  await mock.mode({ mode: "fail_mid_stream" });
  // Every task failed the same way, so the run's code is that LLM error's, the reason said once.
  const error = checkRunError(await ask(url, "Summarize: Article1 | Article2 | Article3"), "llm_stream_error");
  assert.match(error.message, /no document could be summarized \(3 of 3 failed\)/);
  assert.equal(error.message.match(/sent an error mid-stream/g).length, 1);
});

test("voters failing mid-stream below the quorum end the run with RUN_ERROR", async () => {
  await mock.mode({ mode: "fail_mid_stream" });
  const error = checkRunError(await ask(url, "Is remote work better than office work?"), "llm_stream_error");
  assert.match(error.message, /3 of 3 voters failed, leaving 0 valid votes where 2 are needed/);
});

test("a section failing mid-stream still finishes, with the failure reported", async () => {
  // The mock counts calls from 1: the second of the three fails.
  await mock.mode({ mode: "fail_mid_stream", fail_every: 2 });
  const run = await ask(url, "Write about AI ethics: Privacy, Bias, Transparency");
  const result = checkFinished(run);
  assert.equal(result.activity.failed_tasks, 1);
  assert.equal(result.activity.completed_tasks, 2);
  assert.equal(run.raw.filter((e) => e.type === "SUBAGENT_ERROR").length, 1);
  assert.equal(result.activity.notes.length, 1, "the failure is not noted");
});
