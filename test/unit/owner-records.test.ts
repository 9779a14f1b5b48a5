// Covers src/task/orphans.ts, src/exec/pid.ts and src/fs/private-files.ts: owner records live in
// a runner-only directory (0700, files 0600) and name processes by pid and start time; the reaper
// kills a recorded job only while the pid is still that job, and never trusts the attempt
// directory; the runner's directories are refused when another uid owns them or others may write them.
import { describe, expect, test } from "bun:test";

import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { isProcessRunning, processGroupOf, processStartTicks } from "../../src/exec/pid.ts";
import { ensurePrivateDir, PrivateDirError, writeNewPrivateFile } from "../../src/fs/private-files.ts";
import { forgetOwner, reapOrphans, recordOwner } from "../../src/task/orphans.ts";
import { deadPid, detachedSleep } from "../helpers/host-processes.ts";
import { waitFor } from "../helpers/wait-for.ts";

const tmp = (name: string) => mkdtempSync(join(tmpdir(), `${name}-`));
const asRoot = process.geteuid?.() === 0;

describe("pids", () => {
  test("start time (field 22) and process group come from /proc/<pid>/stat", () => {
    expect(processStartTicks(process.pid)).toBeGreaterThan(0);
    expect(processGroupOf(process.pid)).toBeGreaterThan(0);
    expect(processStartTicks(2 ** 22 + 7)).toBeUndefined();
  });
});

describe("owner records", () => {
  test(
    "written in <working-dir>/studio-runner/.owners (0700, 0600), not in the " +
      "attempt directory; forgotten at the end",
    async () => {
      const wd = tmp("owners");
      const attemptDir = join(wd, "studio-runner", "exp-1", "123-1");
      mkdirSync(attemptDir, { recursive: true });
      await recordOwner(attemptDir, { host: hostname(), runnerPid: process.pid, runnerId: "r1" });
      expect(readdirSync(attemptDir)).toEqual([]);
      const owners = join(wd, "studio-runner", ".owners");
      expect(statSync(owners).mode & 0o777).toBe(0o700);
      const [file] = readdirSync(owners);
      expect(statSync(join(owners, file!)).mode & 0o777).toBe(0o600);
      const doc = JSON.parse(readFileSync(join(owners, file!), "utf8"));
      expect(doc.runner).toEqual({ pid: process.pid, startTicks: processStartTicks(process.pid) });
      expect(doc.key).toBe("exp-1");
      await forgetOwner(attemptDir);
      expect(readdirSync(owners)).toEqual([]);
    },
  );

  test(
    "a real orphan is stopped; a forged record (attempt dir, or a pid whose start " + "time differs) kills nothing",
    async () => {
      const wd = tmp("reap");
      const unrelated = detachedSleep();
      const orphan = detachedSleep();
      try {
        // The real orphan: recorded by a runner (pid now dead) right after spawning it.
        const attemptDir = join(wd, "studio-runner", "exp-real", "1-1");
        mkdirSync(attemptDir, { recursive: true });
        const gone = await deadPid();
        await recordOwner(attemptDir, { host: hostname(), runnerPid: gone, runnerId: "old", jobPid: orphan });
        // What a job could write into its own directory: the old runner.json naming an unrelated process.
        const forgedDir = join(wd, "studio-runner", "exp-forged", "1-1");
        mkdirSync(forgedDir, { recursive: true });
        writeFileSync(
          join(forgedDir, "runner.json"),
          JSON.stringify({ host: hostname(), runnerPid: gone, runnerId: "x", jobPid: unrelated }),
        );
        // A record naming the unrelated pid with a start time that is not its own.
        const owners = join(wd, "studio-runner", ".owners");
        writeFileSync(
          join(owners, "forged.json"),
          JSON.stringify({
            version: 2,
            host: hostname(),
            bootId: "x",
            runnerId: "x",
            runner: { pid: gone, startTicks: 1 },
            job: { pid: unrelated, startTicks: 1 },
            key: "exp-forged",
            attempt: "1-1",
          }),
        );
        const logs: string[] = [];
        const reaped = await reapOrphans(wd, { runnerId: "new" }, (m) => logs.push(m));
        expect(reaped).toBe(1);
        expect(logs.join("\n")).toContain("stopped orphaned experiment exp-real");
        await waitFor("the orphan to be gone", () => !isProcessRunning(orphan), 5_000, 20);
        expect(isProcessRunning(unrelated)).toBe(true);
        expect(existsSync(attemptDir)).toBe(false);
        expect(readdirSync(owners)).toEqual([]);
      } finally {
        for (const pid of [unrelated, orphan]) {
          try {
            process.kill(pid, "SIGKILL");
          } catch {
            // gone
          }
        }
      }
    },
  );

  test("a live runner's attempts are left alone", async () => {
    const wd = tmp("live");
    const job = detachedSleep();
    try {
      const attemptDir = join(wd, "studio-runner", "exp-live", "1-1");
      mkdirSync(attemptDir, { recursive: true });
      await recordOwner(attemptDir, {
        host: hostname(),
        runnerPid: process.pid,
        runnerId: "other-runner-in-this-process",
        jobPid: job,
      });
      // Same pid and start time as this process: the owner is alive.
      expect(await reapOrphans(wd, { runnerId: "new" }, () => {})).toBe(0);
      expect(isProcessRunning(job)).toBe(true);
      expect(existsSync(attemptDir)).toBe(true);
    } finally {
      process.kill(job, "SIGKILL");
    }
  });
});

describe("private directories", () => {
  test("made with the mode asked for (0711 survives the umask); read bits of an existing one are tightened", () => {
    const base = tmp("pdirs");
    ensurePrivateDir(join(base, "a"), { mode: 0o711, label: "test" });
    expect(statSync(join(base, "a")).mode & 0o777).toBe(0o711);
    mkdirSync(join(base, "b"), { mode: 0o755 });
    chmodSync(join(base, "b"), 0o755);
    ensurePrivateDir(join(base, "b"), { mode: 0o700, label: "test" });
    expect(statSync(join(base, "b")).mode & 0o777).toBe(0o700);
  });

  test("writable by others and not empty: refused; empty (a fresh mount point): tightened", () => {
    const base = tmp("pdirs");
    mkdirSync(join(base, "open", "planted"), { recursive: true });
    chmodSync(join(base, "open"), 0o777);
    expect(() => ensurePrivateDir(join(base, "open"), { mode: 0o700, label: "--cache-dir" })).toThrow(
      /writable by other users \(mode 0777\)/,
    );
    mkdirSync(join(base, "fresh"));
    chmodSync(join(base, "fresh"), 0o777);
    ensurePrivateDir(join(base, "fresh"), { mode: 0o700, label: "--cache-dir" });
    expect(statSync(join(base, "fresh")).mode & 0o777).toBe(0o700);
  });

  test("a symlink where the runner makes its own directory is refused; an operator's may be followed", () => {
    const base = tmp("pdirs");
    mkdirSync(join(base, "target"), { mode: 0o700 });
    symlinkSync(join(base, "target"), join(base, "link"));
    expect(() => ensurePrivateDir(join(base, "link"), { mode: 0o700, label: "x" })).toThrow(PrivateDirError);
    ensurePrivateDir(join(base, "link"), { mode: 0o700, label: "x", followSymlink: true });
  });

  test.if(asRoot)("owned by another uid: refused", () => {
    const base = tmp("pdirs");
    mkdirSync(join(base, "theirs"), { mode: 0o700 });
    chownSync(join(base, "theirs"), 65534, 65534);
    expect(() => ensurePrivateDir(join(base, "theirs"), { mode: 0o700, label: "--cache-dir" })).toThrow(
      /owned by uid 65534/,
    );
  });

  test("new private files: 0600, never over an existing file or through a link", () => {
    const base = tmp("pfiles");
    writeNewPrivateFile(join(base, "f"), "x");
    expect(statSync(join(base, "f")).mode & 0o777).toBe(0o600);
    expect(() => writeNewPrivateFile(join(base, "f"), "y")).toThrow();
    symlinkSync(join(base, "elsewhere"), join(base, "l"));
    expect(() => writeNewPrivateFile(join(base, "l"), "y")).toThrow();
    expect(existsSync(join(base, "elsewhere"))).toBe(false);
  });
});
