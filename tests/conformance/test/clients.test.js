// The client matrix: every strategy and the error cases through each @ag-ui/client generation in
// use (lib/clients.js). Each must accept every run with zero warnings and rebuild the answer and
// the activity; the pre-1.0 ones get the legacy profile (no SUBAGENT_* events, one text message,
// each task's text live in the activity), and both profiles end with the same result.

import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import { after, afterEach, before, describe, test } from "node:test";

import { ask, checkFinished, checkRunError, rebuiltActivity } from "../lib/agui.js";
import { CLIENTS } from "../lib/clients.js";
import { roomsDirWith, startMockLlm, startRoomhost } from "../lib/servers.js";

const PROMPTS = [
  "Write about AI ethics: Privacy, Bias, Transparency",
  "Is remote work better than office work?",
  "Summarize: Article1 | Article2 | Article3",
];

let mock;
let host;
let thinking;
let rooms;
const run = (client, prompt, forwardedProps, on = host) =>
  ask(`${on.url}/rooms/parallelization/run`, prompt, forwardedProps, client);

before(async () => {
  mock = await startMockLlm();
  host = await startRoomhost(mock.url);
  rooms = await roomsDirWith({ show_thinking: true });
  thinking = await startRoomhost(mock.url, { ROOMHOST_ROOMS_DIR: rooms });
});

afterEach(() => mock.reset());

after(async () => {
  await thinking?.stop();
  await host?.stop();
  await mock?.stop();
  if (rooms) await rm(rooms, { recursive: true, force: true });
});

/** What the client's profile promises, on top of checkStream's checks. */
function checkProfile(client, events) {
  const subagents = events.filter((e) => e.type.startsWith("SUBAGENT"));
  const texts = events.filter((e) => e.type === "TEXT_MESSAGE_START");
  if (client.profile === "legacy") {
    assert.deepEqual(subagents, [], "SUBAGENT_* events in the legacy profile");
    assert.ok(events.every((e) => e.subagentRunId === undefined), "an event of a subagent in the legacy profile");
    assert.ok(texts.length <= 1, `${texts.length} text messages in the legacy profile`);
  } else if (events.at(-1).type === "RUN_FINISHED") {
    assert.ok(subagents.length > 0, "no subagents in the full profile");
  }
}

/** Comparable across runs: the result without its per-run ids and the live text's updates. */
const comparable = (result) => ({
  ...result,
  activity: { ...result.activity, results: result.activity.results.map((r) => ({ ...r, subagent_run_id: "" })) },
});

for (const client of CLIENTS) {
  describe(`${client.name} (${client.profile} profile)`, () => {
    for (const prompt of PROMPTS) {
      test(`finishes: ${prompt}`, async () => {
        const got = await run(client, prompt);
        const result = checkFinished(got);
        checkProfile(client, got.raw);
        const reference = checkFinished(await run(CLIENTS.at(-1), prompt));
        assert.deepEqual(comparable(result), comparable(reference), "the profiles' results differ");
      });
    }

    test("each task's text reaches the activity live (legacy) or as its subagent's message (full)", async () => {
      await mock.mode({ mode: "auto", chunk_ms: 60 });
      const got = await run(client, PROMPTS[0]);
      const { activity } = checkFinished(got);
      checkProfile(client, got.raw);
      const live = got.raw
        .filter((e) => e.type === "ACTIVITY_DELTA")
        .flatMap((e) => e.patch)
        .filter((op) => op.op === "add" && /^\/results\/\d+\/text$/.test(op.path));
      if (client.profile === "legacy") {
        const shown = new Set(live.map((op) => op.path));
        assert.equal(shown.size, activity.results.length, "not every task's text was shown live");
        for (const op of live) {
          const output = activity.results[Number(op.path.split("/")[2])].output;
          assert.ok(output.startsWith(op.value), `${JSON.stringify(op.value)} is not a prefix of the output`);
        }
      } else {
        assert.deepEqual(live, []);
      }
    });

    for (const prompt of PROMPTS) {
      test(`thinking shown: ${prompt}`, async () => {
        const got = await run(client, prompt, undefined, thinking);
        checkFinished(got);
        checkProfile(client, got.raw);
        const reasoning = got.raw.filter((e) => e.type.startsWith("REASONING"));
        if (client.profile === "full") assert.ok(reasoning.length > 0, "no thinking streamed");
      });
    }

    test("strategies chosen by forwardedProps.strategy", async () => {
      for (const strategy of ["sectioning", "voting", "map_reduce"]) {
        const got = await run(client, "Tell me about green tea.", { strategy });
        assert.equal(checkFinished(got).strategy, strategy);
        checkProfile(client, got.raw);
      }
    });

    test("an unknown room and an unknown strategy are HTTP errors before any event", async () => {
      const missing = await ask(`${host.url}/rooms/no-such-room/run`, "Hello?", undefined, client);
      assert.equal(missing.failure?.status, 404, String(missing.failure));
      const unknown = await run(client, "Hello?", { strategy: "guessing" });
      assert.equal(unknown.failure?.status, 400, String(unknown.failure));
      for (const r of [missing, unknown]) {
        assert.deepEqual(r.raw, []);
        assert.deepEqual(r.console, []);
      }
    });

    test("a backend answering 503 ends the run with RUN_ERROR", async () => {
      await mock.mode({ mode: "fail_status", status: 503 });
      const got = await run(client, PROMPTS[0]);
      checkRunError(got);
      checkProfile(client, got.raw);
    });

    test("voters failing mid-stream below the quorum end the run with RUN_ERROR", async () => {
      await mock.mode({ mode: "fail_mid_stream" });
      const got = await run(client, PROMPTS[1]);
      checkRunError(got, "llm_stream_error");
      checkProfile(client, got.raw);
      assert.equal(rebuiltActivity(got.raw).content.failed_tasks, 3);
    });

    test("a section failing mid-stream still finishes, with the failure reported", async () => {
      await mock.mode({ mode: "fail_mid_stream", fail_every: 2 });
      const got = await run(client, PROMPTS[0]);
      const { activity } = checkFinished(got);
      checkProfile(client, got.raw);
      assert.equal(activity.failed_tasks, 1);
      assert.equal(activity.notes.length, 1);
    });
  });
}
