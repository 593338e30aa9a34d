// A room that streams the model's thinking: REASONING_* events of each task's subagent (and of the
// run's own calls), through HttpAgent, with the thinking kept apart from the answer.

import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import { after, before, test } from "node:test";

import { ask, checkFinished, finalAnswer } from "../lib/agui.js";
import { roomsDirWith, startMockLlm, startRoomhost } from "../lib/servers.js";

let mock;
let host;
let rooms;

before(async () => {
  mock = await startMockLlm();
  rooms = await roomsDirWith({ show_thinking: true });
  host = await startRoomhost(mock.url, { ROOMHOST_ROOMS_DIR: rooms });
});

after(async () => {
  await host?.stop();
  await mock?.stop();
  if (rooms) await rm(rooms, { recursive: true, force: true });
});

for (const prompt of [
  "Write about AI ethics: Privacy, Bias, Transparency",
  "Is remote work better than office work?",
  "Summarize: Article1 | Article2 | Article3",
]) {
  test(`thinking streams as reasoning messages: ${prompt}`, async () => {
    const run = await ask(`${host.url}/rooms/parallelization/run`, prompt);
    checkFinished(run);
    const reasoning = run.raw.filter((e) => e.type === "REASONING_MESSAGE_CONTENT");
    const subagents = new Set(run.raw.filter((e) => e.type === "SUBAGENT_STARTED").map((e) => e.subagentRunId));
    assert.ok(reasoning.length > 0, "no thinking streamed");
    // A task's thinking belongs to its subagent; the run's own calls (the reduction) have none.
    for (const e of reasoning) {
      if (e.subagentRunId !== undefined) assert.ok(subagents.has(e.subagentRunId), "thinking of an unknown subagent");
    }
    assert.ok(reasoning.some((e) => e.subagentRunId !== undefined), "no task's thinking streamed");
    assert.ok(!finalAnswer(run.raw).text.includes("Considering"), "thinking leaked into the answer");
    const kept = run.agent.messages.filter((m) => m.role === "reasoning");
    assert.equal(kept.length, new Set(reasoning.map((e) => e.messageId)).size);
  });
}
