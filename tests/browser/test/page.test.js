// The chat page in headless Chromium against roomhost and the mock LLM: each strategy from its
// suggestion chip, the strategy picker, Markdown that stays text, a RUN_ERROR shown as a message,
// Stop cancelling the run so that the server closes its model calls, a reload resuming a running
// run, a stored thread reopened from the sidebar, and streamed thinking.

import assert from "node:assert/strict";
import { copyFile, mkdir, mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";

import { chromium } from "playwright-core";

import { lastRun as lastRunOf, settled as settledRun } from "../lib/runs.js";

import { REPO, roomsDirWith, startMockLlm, startRoomhost } from "../../conformance/lib/servers.js";

const OUT = path.join(REPO, "test-output/browser");
const CHROMIUM = process.env.CHROMIUM_BIN ?? "/usr/bin/chromium";
/** The mock's pace and length of answers: a run takes a couple of seconds and fills its cards. */
const AUTO = { mode: "auto", chunk_ms: 50, words: 24 };
const RUN_LIMIT_MS = 30_000;

let mock;
let host;
let profile;
let context;
let page;
const pageErrors = [];

before(async () => {
  await mkdir(OUT, { recursive: true });
  mock = await startMockLlm();
  // The parallelization room alone: these tests drive its strategies from the page's first room.
  host = await startRoomhost(mock.url, { ROOMHOST_ROOMS_DIR: await roomsDirWith({}) });
  await mock.mode(AUTO);
  profile = await mkdtemp(path.join(os.tmpdir(), "roomhost-chromium-"));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    viewport: { width: 1280, height: 800 },
  });
  page = context.pages()[0] ?? (await context.newPage());
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") pageErrors.push(`${m.type()}: ${m.text()}`);
  });
  page.on("pageerror", (e) => pageErrors.push(`uncaught: ${e.message}`));
  await page.goto(host.url);
});

after(async () => {
  await context?.close();
  if (profile) await rm(profile, { recursive: true, force: true });
  await host?.stop();
  await mock?.stop();
});

const lastRun = () => lastRunOf(page);
// Transitions fast-forwarded: a screenshot shows the state the assertions see.
const shot = (name) => page.screenshot({ path: path.join(OUT, `${name}.png`), animations: "disabled" });

const settled = () => settledRun(page, RUN_LIMIT_MS);

async function expectComplete(name) {
  const state = await settled();
  await shot(name);
  const error = (await lastRun().locator(".error-box").textContent()) ?? "";
  assert.equal(state, "complete", `the run ended ${state}: ${error}`);
}

/** Cards, progress, phase and answer of a completed run with `tasks` parallel tasks. */
async function assertCompletedRun(strategyLabel, tasks) {
  const run = lastRun();
  assert.match(await run.locator(".pill.strategy").textContent(), new RegExp(`^${strategyLabel}`));
  assert.equal(await run.locator(".phase").textContent(), "Complete");
  assert.equal(await run.locator(".progress-label").textContent(), `${tasks} / ${tasks} tasks`);
  assert.equal(await run.locator(".progress-bar").evaluate((el) => el.style.width), "100%");
  const cards = run.locator(".task");
  assert.equal(await cards.count(), tasks);
  for (const card of await cards.all()) {
    assert.equal(await card.getAttribute("data-status"), "complete");
    assert.ok((await card.locator(".task-text").textContent()).length > 10, "a card without text");
    assert.match(await card.locator(".task-tokens").textContent(), /^\d[\d,]* tokens$/);
  }
  const answer = (await run.locator(".answer").textContent()).trim();
  assert.ok(answer.length > 10, "no final answer");
  return run;
}

test("lists the rooms with their descriptions and the room's suggestions", async () => {
  const room = page.locator(".room");
  assert.equal(await room.count(), 1);
  assert.equal(await room.locator(".room-name").textContent(), "Parallelization");
  assert.match(await room.locator(".room-desc").textContent(), /sectioning, voting, or map-reduce/);
  assert.equal(await page.locator(".chip").count(), 3);
  await page.locator('#server-status[data-state="ready"]').waitFor();
  await shot("01-rooms");
});

test("sectioning: a card per section streams, then the document renders as Markdown", async () => {
  await page.locator(".chip", { hasText: "AI ethics" }).click();
  // Mid-run: every card has streamed some text and the run is still going.
  await page.waitForFunction(
    () => {
      const run = [...document.querySelectorAll(".run")].at(-1);
      const texts = [...(run?.querySelectorAll(".task-text") ?? [])].map((t) => t.textContent.length);
      return run?.dataset.state === "running" && texts.length === 3 && texts.every((n) => n > 120);
    },
    null,
    { timeout: RUN_LIMIT_MS },
  );
  assert.equal(await lastRun().locator('.task[data-status="running"]').count(), 3);
  await shot("02-sectioning-running");
  // The README's picture is refreshed on request only, so a test run leaves the tree unchanged.
  if (process.env.UPDATE_SCREENSHOT === "1") {
    await copyFile(path.join(OUT, "02-sectioning-running.png"), path.join(REPO, "docs/screenshot.png"));
  }

  await expectComplete("03-sectioning-complete");
  const run = await assertCompletedRun("Sectioning", 3);
  assert.deepEqual(await run.locator(".task-label").allTextContents(), [
    "Section: Privacy",
    "Section: Bias",
    "Section: Transparency",
  ]);
  assert.deepEqual(await run.locator(".answer h2").allTextContents(), ["Privacy", "Bias", "Transparency"]);
  assert.equal(await run.locator(".votes-block").isVisible(), false);
});

test("voting: three voters, then the vote chart with the agreement", async () => {
  await page.locator(".chip", { hasText: "remote work" }).click();
  await expectComplete("04-voting-complete");
  const run = await assertCompletedRun("Voting", 3);
  assert.ok(await run.locator(".votes-block").isVisible(), "no vote chart");
  const counts = (await run.locator(".vote-count").allTextContents()).map(Number);
  assert.equal(counts.reduce((a, b) => a + b, 0), 3);
  assert.deepEqual(counts, [...counts].sort((a, b) => b - a), "votes not sorted");
  assert.equal(await run.locator(".vote-row.winner").count(), 1);
  const agreement = await run.locator(".agreement").textContent();
  assert.match(agreement, /^3 of 3 valid votes · agreement \d+%$/);
  assert.equal(agreement.match(/(\d+)%$/)[1], String(Math.round((counts[0] / 3) * 100)));
});

test("map-reduce: one card per document, then the combined summary", async () => {
  await page.locator(".chip", { hasText: "Summarize" }).click();
  await expectComplete("05-map-reduce-complete");
  const run = await assertCompletedRun("Map-reduce", 3);
  assert.deepEqual(await run.locator(".task-label").allTextContents(), ["Document 1", "Document 2", "Document 3"]);
});

test("the strategy picker sends forwardedProps.strategy", async () => {
  await page.locator(".strategy label", { hasText: "Voting" }).click();
  await page.locator("#prompt").fill("Tell me about green tea.");
  await page.locator("#prompt").press("Enter");
  await expectComplete("06-picked-voting");
  await assertCompletedRun("Voting · chosen", 3);
  await page.locator(".strategy label", { hasText: "Auto" }).click();
});

test("model output with HTML stays text in the Markdown answer", async () => {
  const html = '<img src="x" data-injected="1"><b data-injected="1">bold</b>';
  await page.locator("#prompt").fill(`Write about ${html}: Alpha, Beta`);
  await page.locator("#prompt").press("Enter");
  await expectComplete("07-html-stays-text");
  const run = lastRun();
  // The document's title is the topic, as a Markdown heading.
  assert.equal(await run.locator(".answer h1").textContent(), html);
  assert.equal(await page.locator("[data-injected]").count(), 0, "model output became markup");
});

test("the Markdown renderer makes only its own tags, whatever the model writes", async () => {
  const source = [
    "# Title with <script>window.pwned = 1</script>",
    "Some **bold**, *italic*, `<b>code</b>` and ~~gone~~.",
    "- item <img src=x onerror=alert(1)>\n  - nested [ok](https://example.com/a_b)\n1. first",
    "```html\n<iframe src=javascript:alert(1)></iframe>\n```",
    '[x](javascript:alert(1)) [y](https://e.com/"onmouseover="alert) <a href="https://e.com">raw</a>',
    "| a | <svg onload=alert(1)> |\n|---|---|\n| 1 | 2 |",
    "> quoted <style>body{display:none}</style>",
  ].join("\n\n");
  const found = await page.evaluate(async (md) => {
    const { renderMarkdown } = await import("/assets/markdown.js");
    const root = document.createElement("div");
    root.innerHTML = renderMarkdown(md);
    return {
      text: root.textContent,
      tags: [...new Set([...root.querySelectorAll("*")].map((e) => e.tagName.toLowerCase()))].sort(),
      attributes: [...root.querySelectorAll("*")].flatMap((e) => [...e.attributes].map((a) => `${a.name}=${a.value}`)),
    };
  }, source);
  assert.deepEqual(found.tags, [
    "a", "blockquote", "code", "del", "div", "em", "h1", "li", "ol", "p", "pre", "strong", "table", "tbody", "td", "th", "thead", "tr", "ul",
  ]);
  assert.deepEqual(found.attributes.sort(), [
    "class=table-wrap",
    "data-lang=html",
    'href=https://e.com/"onmouseover="alert',
    "href=https://example.com/a_b",
    "rel=noopener noreferrer",
    "rel=noopener noreferrer",
    "target=_blank",
    "target=_blank",
  ]);
  for (const kept of ["<script>window.pwned = 1</script>", "<img src=x onerror=alert(1)>", "<iframe", "<b>code</b>", "<svg onload=alert(1)>"]) {
    assert.ok(found.text.includes(kept), `lost ${kept}`);
  }
});

test("a RUN_ERROR shows as a readable message", async () => {
  await mock.mode({ ...AUTO, mode: "fail_mid_stream" });
  try {
    await page.locator(".chip", { hasText: "remote work" }).click();
    assert.equal(await settled(), "failed");
    await shot("08-run-error");
  } finally {
    await mock.mode(AUTO);
  }
  const run = lastRun();
  assert.equal(await run.locator(".phase").textContent(), "Failed");
  const error = run.locator(".error-box");
  assert.ok(await error.isVisible());
  assert.match(await error.locator("strong").textContent(), /The run failed/);
  assert.match(await error.textContent(), /3 of 3 voters failed/);
  assert.equal(await error.locator("code").textContent(), "llm_stream_error");
  assert.equal(await run.locator('.task[data-status="failed"]').count(), 3);
  // The voters failed for the same reason: the run's message says it once, the cards do not repeat it.
  const repeated = await run.locator(".task-error").evaluateAll((els) => els.filter((e) => e.textContent).length);
  assert.equal(repeated, 0, "the tasks repeat the run's error");
});

test("an HTTP error before the stream shows the server's message", async () => {
  await page.locator("#prompt").fill("/guess what");
  await page.locator("#prompt").press("Enter");
  assert.equal(await settled(), "failed");
  await shot("09-http-error");
  const error = lastRun().locator(".error-box");
  assert.equal(await error.locator("strong").textContent(), "The server refused the run (HTTP 400)");
  assert.match(await error.textContent(), /unknown command \/guess; use \/sectioning, \/voting, \/mapreduce or \/followup/);
  assert.equal(await error.locator("code").textContent(), "bad_request");
  // Chromium itself logs every non-2xx fetch; that one line is expected here, and only here.
  const logged = pageErrors.findIndex((e) => e.includes("status of 400"));
  assert.ok(logged >= 0, "Chromium did not log the refused request");
  pageErrors.splice(logged, 1);
});

test("Stop closes the stream and the server cancels its model calls", async () => {
  // Slow chunks: the run is certainly still streaming when Stop is pressed.
  await mock.reset();
  await mock.mode({ ...AUTO, chunk_ms: 400 });
  await page.locator(".chip", { hasText: "AI ethics" }).click();
  await page.waitForFunction(
    () => [...document.querySelectorAll(".run")].at(-1)?.querySelectorAll(".task-text:not(:empty)").length === 3,
    null,
    { timeout: RUN_LIMIT_MS },
  );
  const before = await mock.stats();
  assert.equal(before.in_flight, 3, JSON.stringify(before));
  await page.locator("#stop").click();
  assert.equal(await settled(), "stopped");
  await shot("10-stopped");

  let stats = before;
  for (let i = 0; i < 50 && (stats.in_flight > 0 || stats.disconnects === 0); i += 1) {
    await new Promise((r) => setTimeout(r, 100));
    stats = await mock.stats();
  }
  assert.equal(stats.in_flight, 0, `model calls still running: ${JSON.stringify(stats)}`);
  assert.equal(stats.disconnects, 3, `the server did not drop its model calls: ${JSON.stringify(stats)}`);
  const run = lastRun();
  assert.equal(await run.locator(".phase").textContent(), "Stopped");
  assert.equal(await run.locator('.task[data-status="stopped"]').count(), 3);
  assert.ok(await page.locator("#send").isEnabled());
  assert.ok(await page.locator("#stop").isHidden());
  await mock.mode(AUTO);
});

test("a reload keeps the thread and resumes the running run where its stream broke", async () => {
  await page.locator("#new-chat").click();
  await mock.mode({ ...AUTO, chunk_ms: 150 });
  await page.locator(".chip", { hasText: "AI ethics" }).click();
  await page.waitForFunction(
    () => [...document.querySelectorAll(".run")].at(-1)?.querySelectorAll(".task-text:not(:empty)").length === 3,
    null,
    { timeout: RUN_LIMIT_MS },
  );
  const thread = new URLSearchParams(new URL(page.url()).hash.slice(1)).get("thread");
  assert.ok(thread, "the thread is in the address");
  await page.reload();
  await page.locator(".turn .run").first().waitFor({ timeout: RUN_LIMIT_MS });
  assert.equal(new URLSearchParams(new URL(page.url()).hash.slice(1)).get("thread"), thread);
  assert.equal(await page.locator(".turn").count(), 1);
  await expectComplete("12-reload-resumed");
  await assertCompletedRun("Sectioning", 3);
  assert.match(await page.locator(".turn .user-msg").first().textContent(), /AI ethics/);
  await mock.mode(AUTO);
});

test("an old thread reopens from the sidebar with its answers and final activity", async () => {
  const thread = new URLSearchParams(new URL(page.url()).hash.slice(1)).get("thread");
  await page.locator(".chip", { hasText: "Summarize" }).click();
  await expectComplete("13-follow-up");
  const answers = await page.locator(".turn .answer").allTextContents();
  assert.equal(answers.length, 2);
  await page.locator("#new-chat").click();
  assert.equal(await page.locator(".turn").count(), 0);
  await page.locator(`.thread[data-thread="${thread}"]`).click();
  await page.waitForFunction(
    () => [...document.querySelectorAll(".run")].length === 2 && [...document.querySelectorAll(".run")].every((r) => r.dataset.state !== "running"),
    null,
    { timeout: RUN_LIMIT_MS },
  );
  await shot("14-thread-reopened");
  assert.deepEqual(await page.locator(".turn .answer").allTextContents(), answers);
  for (const phase of await page.locator(".turn .phase").allTextContents()) assert.equal(phase, "Complete");
  assert.equal(await page.locator(`.thread[aria-current="true"]`).getAttribute("data-thread"), thread);
});

test("a room that shows thinking: each card's thinking, and the reduction's above the answer", async () => {
  const rooms = await roomsDirWith({ show_thinking: true });
  const thinkingHost = await startRoomhost(mock.url, { ROOMHOST_ROOMS_DIR: rooms });
  try {
    await page.goto(thinkingHost.url);
    await page.locator(".chip", { hasText: "Summarize" }).click();
    await expectComplete("11-thinking");
    const run = await assertCompletedRun("Map-reduce", 3);
    const cardThinking = run.locator(".task .thinking");
    assert.equal(await cardThinking.count(), 3);
    for (const t of await cardThinking.all()) {
      assert.ok(await t.isVisible());
      assert.match(await t.locator(".thinking-text").textContent(), /^Considering /);
    }
    assert.ok(await run.locator(".answer-block > .thinking").isVisible(), "the reduction's thinking is not shown");
    assert.ok(!(await run.locator(".answer").textContent()).includes("Considering"), "thinking leaked into the answer");
  } finally {
    await page.goto(host.url);
    await thinkingHost.stop();
    await rm(rooms, { recursive: true, force: true });
  }
});

test("the page logged no errors or warnings", () => {
  assert.deepEqual(pageErrors, []);
});
