// Spawns an experiment in its own process group and kills the whole tree (group and any
// descendants that left it) on timeout, stop or shutdown. The spawned process is normally a
// launcher (cgroup wrapper, bwrap, setpriv, the env loader) started with the launchers' minimal
// environment; the job's own environment, when given as jobEnvPayload, is written to the child's
// fd 3 (JOB_ENV_FD) and read there by bwrap --args or the env loader, never put on a command line.

import { spawn, type ChildProcess } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import type { Writable } from "node:stream";

export type ExitInfo = { code: number | null; signal: NodeJS.Signals | null; killedFor?: string };

/** Pids of every descendant of `root`, found through /proc (Linux). */
export function descendants(root: number): number[] {
  const children = new Map<number, number[]>();
  let entries: string[] = [];
  try {
    entries = readdirSync("/proc");
  } catch {
    return [];
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(e));
      children.set(ppid, list);
    } catch {
      // exited meanwhile
    }
  }
  const out: number[] = [];
  const stack = [root];
  while (stack.length) {
    const pid = stack.pop()!;
    for (const c of children.get(pid) ?? []) {
      out.push(c);
      stack.push(c);
    }
  }
  return out;
}

/** Launcher processes a graceful stop leaves alone: bwrap stages and bwrap's init in the sandbox. */
function isLauncher(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/comm`, "utf8").trim() === "bwrap";
  } catch {
    return false;
  }
}

export class JobProcess {
  private readonly child: ChildProcess;
  private killedFor?: string;
  readonly exited: Promise<ExitInfo>;

  /**
   * `sandboxed`: the command is a sandbox (bubblewrap) that does not pass signals on, so the
   * polite SIGTERM of stop() goes to the processes inside it, not to the sandbox itself.
   */
  constructor(
    argv: string[],
    private readonly options: {
      cwd: string;
      env: Record<string, string>;
      onLine: (line: string) => void;
      sandboxed?: boolean;
      /** Written to the child's fd 3 and closed: the job's environment for bwrap --args or the env loader. */
      jobEnvPayload?: Buffer;
      /** Where the lines go; while it is congested the job's pipes are paused, so a job that
       * floods its output is slowed down instead of growing the runner's memory. */
      sink?: { congested: boolean; onceDrained(callback: () => void): void };
    },
  ) {
    const payload = options.jobEnvPayload;
    this.child = spawn(argv[0]!, argv.slice(1), {
      cwd: options.cwd,
      env: options.env,
      detached: true,
      stdio: payload ? ["ignore", "pipe", "pipe", "pipe"] : ["ignore", "pipe", "pipe"],
    });
    if (payload) {
      const fd3 = this.child.stdio[3] as Writable | null;
      // A launcher that dies before reading its fd makes this write fail: its exit says why.
      fd3?.on("error", () => undefined);
      fd3?.end(payload);
    }
    const split = () => {
      let partial = "";
      return {
        data: (chunk: Buffer) => {
          const lines = (partial + chunk.toString("utf8")).split("\n");
          partial = lines.pop() ?? "";
          for (const line of lines) options.onLine(line.endsWith("\r") ? line.slice(0, -1) : line);
        },
        end: () => {
          if (partial) options.onLine(partial);
          partial = "";
        },
      };
    };
    const out = split();
    const err = split();
    let paused = false;
    const throttle = () => {
      const sink = options.sink;
      if (paused || !sink?.congested) return;
      paused = true;
      this.child.stdout!.pause();
      this.child.stderr!.pause();
      sink.onceDrained(() => {
        paused = false;
        this.child.stdout!.resume();
        this.child.stderr!.resume();
      });
    };
    this.child.stdout!.on("data", (chunk: Buffer) => {
      out.data(chunk);
      throttle();
    });
    this.child.stderr!.on("data", (chunk: Buffer) => {
      err.data(chunk);
      throttle();
    });
    const streamsDone = Promise.all([
      new Promise<void>((r) => this.child.stdout!.on("close", () => (out.end(), r()))),
      new Promise<void>((r) => this.child.stderr!.on("close", () => (err.end(), r()))),
    ]);
    this.exited = new Promise<ExitInfo>((resolve) => {
      this.child.on("error", (e) => {
        options.onLine(`[studio-runner] could not start ${argv[0]}: ${e.message}`);
        resolve({ code: 127, signal: null });
      });
      this.child.on("exit", (code, signal) => {
        // Descendants may hold the pipes open; they die with the tree.
        this.killTree("SIGKILL", true);
        Promise.race([streamsDone, Bun.sleep(2000)]).then(() => resolve({ code, signal, killedFor: this.killedFor }));
      });
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** SIGTERM the tree, then SIGKILL what is left after graceMs. */
  async stop(reason: string, graceMs = 10_000): Promise<ExitInfo> {
    this.killedFor ??= reason;
    if (this.options.sandboxed) this.signalDescendants("SIGTERM");
    else this.killTree("SIGTERM");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const grace = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), graceMs);
    });
    const done = await Promise.race([this.exited, grace]);
    clearTimeout(timer); // a pending grace timer would keep the runner alive after its work is done
    if (done) return done;
    this.killTree("SIGKILL");
    return this.exited;
  }

  /** The job's processes, not the launchers (bwrap dies on SIGTERM and would take the job along at once). */
  private signalDescendants(signal: NodeJS.Signals) {
    const pid = this.child.pid;
    if (!pid) return;
    for (const p of descendants(pid)) {
      if (isLauncher(p)) continue;
      try {
        process.kill(p, signal);
      } catch {
        // gone
      }
    }
  }

  private killTree(signal: NodeJS.Signals, afterExit = false) {
    const pid = this.child.pid;
    if (!pid) return;
    const tree = descendants(pid);
    try {
      process.kill(-pid, signal);
    } catch {
      // group gone
    }
    for (const p of tree) {
      try {
        process.kill(p, signal);
      } catch {
        // gone
      }
    }
    if (!afterExit) {
      try {
        process.kill(pid, signal);
      } catch {
        // gone
      }
    }
  }
}
