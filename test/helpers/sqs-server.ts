// A real SQS-compatible server for tests: fauxqs in a child process, listening on 127.0.0.1 on a
// free port, stopped by pid.

import { NO_METADATA_ENV } from "./s3-server.ts";
import { spawn } from "node:child_process";
import { resolve, join } from "node:path";

const REPO = resolve(import.meta.dir, "../..");
const BUN = join(REPO, "node_modules/.bin/bun");
const READY_TIMEOUT_MS = 30_000;
const STOP_WAIT_MS = 5_000;

// Importing the S3 helper also sets NO_METADATA_ENV in this process: SDKs never probe metadata servers.

export type SqsServer = { endpoint: string; port: number; pid: number; stop(): Promise<void> };

// Runs inside the child: fauxqs's app on the loopback address only (its startFauxqs binds 0.0.0.0).
const LAUNCHER = `
const { buildApp } = await import("fauxqs");
const app = buildApp({ logger: false });
const address = await app.listen({ port: 0, host: "127.0.0.1" });
console.log("FAUXQS_READY " + address);
`;

export async function startSqsServer(): Promise<SqsServer> {
  const child = spawn(BUN, ["-e", LAUNCHER], {
    cwd: REPO,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...NO_METADATA_ENV },
  });
  const exited = new Promise((r) => child.once("exit", r));
  let stderr = "";
  child.stderr!.on("data", (d) => (stderr += d));
  const endpoint = await new Promise<string>((ok, fail) => {
    let out = "";
    const timer = setTimeout(() => fail(new Error(`fauxqs did not start: ${stderr}`)), READY_TIMEOUT_MS);
    child.stdout!.on("data", (d) => {
      out += d;
      const m = /FAUXQS_READY (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        ok(m[1]!);
      }
    });
    void exited.then(() => fail(new Error(`fauxqs exited: ${stderr}`)));
  });
  return {
    endpoint,
    port: Number(new URL(endpoint).port),
    pid: child.pid!,
    async stop() {
      if (child.exitCode === null && child.signalCode === null && child.pid) {
        process.kill(child.pid, "SIGTERM");
        const gone = await Promise.race([exited.then(() => true), Bun.sleep(STOP_WAIT_MS).then(() => false)]);
        if (!gone && child.exitCode === null) process.kill(child.pid, "SIGKILL");
      }
      await exited;
    },
  };
}
