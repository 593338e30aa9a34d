// The page's rough edges, each as a new user met it: no LLM backend (its state, Send disabled,
// Retry), a long thread list that scrolls, deleting a thread with a
// confirmation, cut tasks, a finished follow-up, replayed runs' durations and readable voter cards.

import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";

import { chromium } from "playwright-core";

import { lastRun as lastRunOf, settled as settledRun } from "../lib/runs.js";

import { REPO, freePort, roomsDirWith, startMockLlm, startRoomhost } from "../../conformance/lib/servers.js";

const OUT = path.join(REPO, "test-output/browser");
const CHROMIUM = process.env.CHROMIUM_BIN ?? "/usr/bin/chromium";
const AUTO = { mode: "auto", chunk_ms: 20, words: 24 };
const RUN_LIMIT_MS = 30_000;
const ROOM = "parallelization";

let llmPort;
let mock;
let host;
let profile;
let context;
let page;

before(async () => {
  await mkdir(OUT, { recursive: true });
  // The server starts with nothing on its LLM port; the mock comes up there later.
  llmPort = await freePort();
  // The parallelization room alone: these tests drive its strategies from the page's first room.
  host = await startRoomhost(`http://127.0.0.1:${llmPort}`, { ROOMHOST_ROOMS_DIR: await roomsDirWith({}) });
  profile = await mkdtemp(path.join(os.tmpdir(), "roomhost-chromium-"));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    viewport: { width: 1280, height: 800 },
  });
  page = context.pages()[0] ?? (await context.newPage());
});

after(async () => {
  await context?.close();
  if (profile) await rm(profile, { recursive: true, force: true });
  await host?.stop();
  await mock?.stop();
});

const shot = (name) => page.screenshot({ path: path.join(OUT, `${name}.png`), animations: "disabled" });
const lastRun = () => lastRunOf(page);

const settled = () => settledRun(page, RUN_LIMIT_MS);

async function api(method, route, body) {
  const resp = await fetch(`${host.url}${route}`, {
    method,
    headers: body ? { "content-type": "application/json" } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  return { status: resp.status, body: resp.status === 204 ? null : await resp.json() };
}

test("with no LLM backend the page says what to set, Send waits, and Retry finds the backend", async () => {
  await page.goto(host.url);
  await page.locator('#server-status[data-state="down"]').waitFor();
  await shot("20-no-backend");
  assert.equal(await page.locator("#server-status .label").textContent(), "The LLM backend does not answer");
  const hint = await page.locator("#status-hint").textContent();
  assert.match(hint, /cannot connect to the LLM backend 1/);
  assert.match(hint, /To fix: .*OLLAMA_BASE_URL/);
  assert.match(hint, /cargo run --release --example demo/);
  assert.ok(await page.locator("#send").isDisabled(), "Send is enabled with no backend");
  for (const chip of await page.locator(".chip").all()) assert.ok(await chip.isDisabled());
  assert.ok(await page.locator("#retry-backend").isVisible());

  mock = await startMockLlm(llmPort);
  await mock.mode(AUTO);
  await page.locator("#retry-backend").click();
  await page.locator('#server-status[data-state="ready"]').waitFor();
  assert.ok(await page.locator("#send").isEnabled());
  assert.ok(await page.locator("#retry-backend").isHidden());
  assert.ok(await page.locator("#status-hint").isHidden());
});

test("voter cards show each voter's answer and reasons, not JSON", async () => {
  await page.locator("#new-chat").click();
  await page.locator(".chip", { hasText: "remote work" }).click();
  assert.equal(await settled(), "complete");
  await shot("22-voter-cards");
  const texts = lastRun().locator(".task-text");
  assert.equal(await texts.count(), 3);
  for (const text of await texts.all()) {
    assert.equal(await text.getAttribute("data-structured"), "true");
    assert.ok((await text.locator(".vote-answer").textContent()).length > 0);
    assert.ok(!(await text.textContent()).trim().startsWith("{"), "a voter card shows raw JSON");
  }
});

test("tasks the model stopped at its token limit are marked as cut", async () => {
  await page.locator("#new-chat").click();
  await mock.mode({ ...AUTO, done_reason: "length" });
  try {
    await page.locator(".chip", { hasText: "AI ethics" }).click();
    assert.equal(await settled(), "complete");
    await shot("25-cut-tasks");
  } finally {
    await mock.mode(AUTO);
  }
  const cards = lastRun().locator(".task");
  assert.equal(await cards.count(), 3);
  for (const card of await cards.all()) {
    assert.equal(await card.getAttribute("data-cut"), "max_tokens");
    assert.equal(await card.getAttribute("data-status"), "complete");
    assert.equal(await card.locator(".task-status").textContent(), "cut: token limit");
  }
});

test("a finished follow-up says it is complete, once", async () => {
  await page.locator("#prompt").fill("/followup Say that more briefly");
  await page.locator("#prompt").press("Enter");
  assert.equal(await settled(), "complete");
  await shot("23-follow-up");
  const run = lastRun();
  assert.equal(await run.locator(".phase").textContent(), "Complete");
  const strategy = await run.locator(".pill.strategy").textContent();
  assert.doesNotMatch(strategy, /follow-up.*follow-up/i);
  assert.ok(await run.locator(".progress-row").isHidden(), "a follow-up still shows 'Planning tasks…'");
});

test("a reopened thread's runs show how long they took, not how long the replay did", async () => {
  const thread = new URLSearchParams(new URL(page.url()).hash.slice(1)).get("thread");
  const { body } = await api("GET", `/rooms/${ROOM}/threads/${thread}`);
  await page.locator("#new-chat").click();
  await page.locator(`.thread[data-thread="${thread}"]`).click();
  await page.waitForFunction(
    (n) => document.querySelectorAll(".run").length === n && [...document.querySelectorAll(".run")].every((r) => r.dataset.state !== "running"),
    body.runs.length,
    { timeout: RUN_LIMIT_MS },
  );
  const shown = await page.locator(".run-elapsed").allTextContents();
  const expected = [];
  for (const run of body.runs) {
    const { body: record } = await api("GET", `/rooms/${ROOM}/runs/${run.run_id}`);
    expected.push(`${((Date.parse(record.finished) - Date.parse(record.created)) / 1000).toFixed(1)} s`);
  }
  assert.deepEqual(shown, expected);
});

test("a long thread list scrolls instead of squashing its titles", async () => {
  for (let i = 1; i <= 20; i += 1) {
    const made = await api("POST", `/api/v1/rooms/${ROOM}/agui`, { metadata: { name: `Thread number ${i}` } });
    assert.equal(made.status, 200);
  }
  await page.reload();
  await page.locator(".thread", { hasText: "Thread number 20" }).waitFor();
  await shot("24-long-thread-list");
  const rows = await page.locator(".thread").evaluateAll((els) => els.map((e) => e.getBoundingClientRect().height));
  assert.ok(rows.length >= 20);
  const tallest = Math.max(...rows);
  for (const height of rows) assert.ok(height >= tallest - 0.5 && height >= 26, `a thread drawn ${height} px tall`);
  const list = await page.locator("#threads").evaluate((el) => ({ scroll: el.scrollHeight, client: el.clientHeight }));
  assert.ok(list.scroll > list.client, "the list does not scroll");
});

test("a thread is deleted from the page only once the user confirms", async () => {
  const target = page.locator(".thread-row", { hasText: "Thread number 7" });
  page.once("dialog", (d) => d.dismiss());
  await target.locator(".thread-delete").click();
  await page.locator(".thread", { hasText: "Thread number 20" }).waitFor();
  assert.equal(await target.count(), 1, "deleted without confirmation");

  const id = await target.locator(".thread").getAttribute("data-thread");
  let message = "";
  page.once("dialog", (d) => {
    message = d.message();
    d.accept();
  });
  await target.locator(".thread-delete").click();
  await target.waitFor({ state: "detached" });
  assert.match(message, /Delete "Thread number 7"/);
  assert.equal((await api("GET", `/rooms/${ROOM}/threads/${id}`)).status, 404);
});
