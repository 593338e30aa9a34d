// Every other shipped room's stream (chat, debate, brainstorm, shark-tank) through each
// @ag-ui/client generation in use: zero warnings, the answer and the activity rebuilt, and no
// subagents for the pre-1.0 clients.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { ask, checkFinished, rebuiltActivity } from "../lib/agui.js";
import { CLIENTS } from "../lib/clients.js";
import { startMockLlm, startRoomhost } from "../lib/servers.js";

const ROOMS = [
  ["chat", "Explain what a context window is in two sentences", "chat"],
  ["debate", "Cities should ban cars from their centres", "debate"],
  ["brainstorm", "Ways to get more people cycling to work", "brainstorm"],
  ["shark-tank", "An app that matches dog owners for neighbourhood playdates", "shark_tank"],
];

let mock;
let host;

before(async () => {
  mock = await startMockLlm();
  host = await startRoomhost(mock.url);
});

after(async () => {
  await host?.stop();
  await mock?.stop();
});

for (const client of CLIENTS) {
  describe(client.name, () => {
    for (const [room, prompt, activityType] of ROOMS) {
      test(room, async () => {
        const run = await ask(`${host.url}/rooms/${room}/run`, prompt, undefined, client);
        const result = checkFinished(run);
        assert.ok(result.text.length > 0, "an answer");
        const snapshot = run.raw.find((e) => e.type === "ACTIVITY_SNAPSHOT");
        assert.equal(snapshot.activityType, activityType);
        assert.deepEqual(rebuiltActivity(run.raw).content, result.activity);
        const subagents = run.raw.filter((e) => e.type.startsWith("SUBAGENT"));
        if (client.profile === "legacy") assert.deepEqual(subagents, []);
        else assert.ok(room === "chat" || subagents.length > 0, "the fan-out's calls as subagents");
      });
    }
  });
}
