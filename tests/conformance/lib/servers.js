// Starts the mock LLM and roomhost as child processes on loopback ports, for the Node suites
// (this one and tests/browser). Every process started here is killed when the test process ends,
// also when a test fails or throws.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, writeFile } from "node:fs/promises";
import os from "node:os";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
const ROOMHOST_BIN = process.env.ROOMHOST_BIN ?? path.join(REPO, "target/debug/roomhost");
const MOCK_LLM_BIN = process.env.MOCK_LLM_BIN ?? path.join(REPO, "target/debug/examples/mock_llm");
const START_LIMIT_MS = 15_000;

const children = new Set();
process.on("exit", () => {
  for (const child of children) child.kill("SIGKILL");
});

/** A port that was free a moment ago (the OS picks it). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

class Child {
  constructor(name, bin, args, env) {
    if (!existsSync(bin)) {
      throw new Error(`${name} binary not found at ${bin}: run \`cargo build --bins --examples\` first`);
    }
    this.name = name;
    this.log = "";
    this.proc = spawn(bin, args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    children.add(this.proc);
    this.exited = new Promise((resolve) => {
      this.proc.once("exit", (code, signal) => {
        children.delete(this.proc);
        resolve({ code, signal });
      });
    });
    const keep = (chunk) => {
      this.log = (this.log + chunk).slice(-20_000);
    };
    this.proc.stdout.on("data", keep);
    this.proc.stderr.on("data", keep);
  }

  /** Resolves with the first stdout match of `pattern`, or fails if the process exits first. */
  waitForOutput(pattern) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(this.failure(`no ${pattern} within ${START_LIMIT_MS} ms`)), START_LIMIT_MS);
      const onData = () => {
        const m = pattern.exec(this.log);
        if (m) {
          clearTimeout(timer);
          this.proc.stdout.off("data", onData);
          resolve(m);
        }
      };
      this.proc.stdout.on("data", onData);
      this.exited.then(() => {
        clearTimeout(timer);
        reject(this.failure("exited during start-up"));
      });
      onData();
    });
  }

  failure(what) {
    return new Error(`${this.name} ${what}; its output:\n${this.log}`);
  }

  async stop() {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.kill("SIGTERM");
    const timer = setTimeout(() => this.proc.kill("SIGKILL"), 5_000);
    await this.exited;
    clearTimeout(timer);
  }
}

/** The mock LLM (tests/suite/support/mock_llm.rs) with its HTTP controls. */
export async function startMockLlm(port = 0) {
  const child = new Child("mock_llm", MOCK_LLM_BIN, ["--port", String(port)], {});
  const [, url] = await child.waitForOutput(/listening on (http:\/\/\S+)/);
  const control = async (method, route, body) => {
    const resp = await fetch(`${url}/_mock/${route}`, {
      method,
      headers: body ? { "content-type": "application/json" } : {},
      body: body ? JSON.stringify(body) : undefined,
    });
    if (!resp.ok) throw new Error(`mock ${method} /_mock/${route}: HTTP ${resp.status}`);
    return resp.status === 204 ? undefined : resp.json();
  };
  return {
    url,
    child,
    /** {mode: auto|fail_status|fail_mid_stream|hang, status?, first_byte_ms?, chunk_ms?, fail_every?, words?, done_reason?} */
    mode: (body) => control("POST", "mode", body),
    reset: () => control("POST", "reset"),
    /** {requests, in_flight, peak_in_flight, disconnects} */
    stats: () => control("GET", "stats"),
    stop: () => child.stop(),
  };
}

/** roomhost serving the repo's rooms/ against `llmUrl`; resolves once /healthz answers. */
export async function startRoomhost(llmUrl, env = {}) {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = new Child("roomhost", ROOMHOST_BIN, [], {
    OLLAMA_BASE_URL: llmUrl,
    ROOMHOST_ROOMS_DIR: path.join(REPO, "rooms"),
    ROOMHOST_ADDR: `127.0.0.1:${port}`,
    // A store of its own that goes with the process.
    ROOMHOST_DATABASE_URL: "sqlite::memory:",
    RUST_LOG: "warn",
    ...env,
  });
  const deadline = Date.now() + START_LIMIT_MS;
  for (;;) {
    if (child.proc.exitCode !== null) throw child.failure("exited during start-up");
    try {
      const resp = await fetch(`${url}/healthz`);
      if (resp.ok) break;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) throw child.failure(`did not answer /healthz within ${START_LIMIT_MS} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return { url, child, stop: () => child.stop() };
}

/**
 * A rooms dir holding the repo's parallelization room with `extra` added to its
 * `agent.extra_config` (e.g. {show_thinking: true}); for roomhost's ROOMHOST_ROOMS_DIR.
 */
export async function roomsDirWith(extra) {
  const yaml = await readFile(path.join(REPO, "rooms/parallelization/room_config.yaml"), "utf8");
  const lines = Object.entries(extra).map(([k, v]) => `    ${k}: ${JSON.stringify(v)}\n`).join("");
  assert.ok(yaml.includes("  extra_config:\n"), "the room config has no extra_config block");
  const dir = await mkdtemp(path.join(os.tmpdir(), "roomhost-rooms-"));
  await mkdir(path.join(dir, "parallelization"));
  await writeFile(path.join(dir, "parallelization/room_config.yaml"), yaml.replace("  extra_config:\n", `  extra_config:\n${lines}`));
  return dir;
}
