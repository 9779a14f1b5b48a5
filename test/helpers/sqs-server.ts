// A real SQS-compatible server for tests: fauxqs in a child process, listening on 127.0.0.1 on a free port, stopped by pid.

import { spawn } from "node:child_process";
import { resolve, join } from "node:path";

const REPO = resolve(import.meta.dir, "../..");
const BUN = join(REPO, "node_modules/.bin/bun");
const READY_TIMEOUT_MS = 30_000;
const STOP_WAIT_MS = 5_000;

/** Cloud SDKs must never look for metadata servers in tests. */
export const NO_METADATA_ENV = {
  METADATA_SERVER_DETECTION: "none",
  GCE_METADATA_HOST: "127.0.0.1:9",
  GCE_METADATA_IP: "127.0.0.1:9",
  AWS_EC2_METADATA_DISABLED: "true",
} as const;
Object.assign(process.env, NO_METADATA_ENV);

export type SqsServer = { endpoint: string; port: number; pid: number; stop(): Promise<void> };

// Runs inside the child: fauxqs's app on the loopback address only (its startFauxqs binds 0.0.0.0).
const LAUNCHER = `
const { buildApp } = await import("fauxqs");
const app = buildApp({ logger: false });
const address = await app.listen({ port: 0, host: "127.0.0.1" });
console.log("FAUXQS_READY " + address);
`;

export async function startSqsServer(): Promise<SqsServer> {
  const child = spawn(BUN, ["-e", LAUNCHER], { cwd: REPO, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...NO_METADATA_ENV } });
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
