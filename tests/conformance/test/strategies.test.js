// Every strategy, chosen by the prompt's shape and by forwardedProps.strategy, through HttpAgent.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { ask, checkFinished, runAgent } from "../lib/agui.js";
import { startMockLlm, startRoomhost } from "../lib/servers.js";

let mock;
let host;
let url;

before(async () => {
  mock = await startMockLlm();
  host = await startRoomhost(mock.url);
  url = `${host.url}/rooms/parallelization/run`;
});

after(async () => {
  await host?.stop();
  await mock?.stop();
});

describe("strategies chosen by the prompt", () => {
  test("sectioning: one writer per listed section", async () => {
    const result = checkFinished(await ask(url, "Write about AI ethics: Privacy, Bias, Transparency"));
    assert.equal(result.strategy, "sectioning");
    assert.equal(result.strategy_source, "pattern");
    assert.deepEqual(
      result.activity.results.map((r) => r.label),
      ["Section: Privacy", "Section: Bias", "Section: Transparency"],
    );
  });

  test("voting: the votes, the winner and the agreement", async () => {
    const result = checkFinished(await ask(url, "Is remote work better than office work?"));
    assert.equal(result.strategy, "voting");
    const { votes } = result;
    assert.equal(votes.voters, 3);
    assert.equal(votes.tally.reduce((sum, t) => sum + t.votes, 0), votes.valid);
    assert.equal(votes.answer, votes.tally[0].answer);
    assert.equal(votes.agreement, votes.count / votes.valid);
  });

  test("map-reduce: one summary per document, then the reduction", async () => {
    const result = checkFinished(await ask(url, "Summarize: Article1 | Article2 | Article3"));
    assert.equal(result.strategy, "map_reduce");
    assert.equal(result.documents, 3);
  });
});

describe("strategies chosen by forwardedProps.strategy", () => {
  for (const strategy of ["sectioning", "voting", "map_reduce"]) {
    test(strategy, async () => {
      const result = checkFinished(await ask(url, "Tell me about green tea.", { strategy }));
      assert.equal(result.strategy, strategy);
      assert.equal(result.strategy_source, "explicit");
    });
  }
});

test("a conversation with history, as the chat page sends it", async () => {
  const run = await runAgent(url, {
    messages: [
      { role: "user", content: "Is tea better than coffee?" },
      { role: "assistant", content: "yes (2 of 3 voters)" },
      { role: "user", content: "Summarize: Tea is old | Coffee is newer" },
    ],
  });
  assert.equal(checkFinished(run).strategy, "map_reduce");
});
