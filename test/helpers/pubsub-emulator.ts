// The Google Pub/Sub emulator for tests: a child process on a free 127.0.0.1 port, stopped by pid
// (the launcher script execs java, and any java child it left is stopped by pid too).

import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { connect } from "node:net";
import { freePort, NO_METADATA_ENV } from "./s3-server.ts";

export const PUBSUB_EMULATOR_BIN = "/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator";
const READY_TIMEOUT_MS = 30_000;
const STOP_WAIT_MS = 5_000;

export const pubsubEmulatorInstalled = () => existsSync(PUBSUB_EMULATOR_BIN);

export type PubsubEmulator = {
  /** "127.0.0.1:PORT", the value of PUBSUB_EMULATOR_HOST. */
  host: string;
  pid: number;
  stop(): Promise<void>;
};

/** Start the emulator and point this process's Pub/Sub clients at it (PUBSUB_EMULATOR_HOST). */
export async function startPubsubEmulator(): Promise<PubsubEmulator> {
  Object.assign(process.env, NO_METADATA_ENV);
  const port = await freePort();
  const child: ChildProcess = spawn(PUBSUB_EMULATOR_BIN, [`--host=127.0.0.1`, `--port=${port}`], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout?.on("data", (c) => (output += c));
  child.stderr?.on("data", (c) => (output += c));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const pid = child.pid!;
  const stop = async () => {
    if (process.env.PUBSUB_EMULATOR_HOST === `127.0.0.1:${port}`) delete process.env.PUBSUB_EMULATOR_HOST;
    const children = childPids(pid);
    if (child.exitCode === null && child.signalCode === null) {
      process.kill(pid, "SIGTERM");
      const gone = await Promise.race([exited.then(() => true), Bun.sleep(STOP_WAIT_MS).then(() => false)]);
      if (!gone) process.kill(pid, "SIGKILL");
    }
    for (const c of children) {
      try {
        process.kill(c, "SIGKILL");
      } catch {
        // already gone
      }
    }
  };
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (!(output.includes("Server started") && (await listening(port)))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      await stop();
      throw new Error(`the Pub/Sub emulator did not start on 127.0.0.1:${port}:\n${output}`);
    }
    await Bun.sleep(100);
  }
  const host = `127.0.0.1:${port}`;
  process.env.PUBSUB_EMULATOR_HOST = host;
  return { host, pid, stop };
}

function childPids(pid: number): number[] {
  const out = spawnSync("ps", ["-o", "pid=", "--ppid", String(pid)], { encoding: "utf8" }).stdout ?? "";
  return out
    .split("\n")
    .map((l) => Number(l.trim()))
    .filter((n) => Number.isInteger(n) && n > 0);
}

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, "127.0.0.1");
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}
