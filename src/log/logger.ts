// The runner's own log: consola, human-readable by default, one JSON object per line with
// --log-format json.

import { createConsola, type ConsolaInstance, type LogObject } from "consola";

/** What the runner logs through: a message and its fields, at one of four levels. */
export type Logger = {
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
  debug(message: string, fields?: Record<string, unknown>): void;
};

export type LogFormat = "human" | "json";

function jsonReporter() {
  return {
    log(obj: LogObject) {
      const [message, fields] = obj.args as [unknown, Record<string, unknown> | undefined];
      const line = { time: obj.date.toISOString(), level: obj.type, message: String(message), ...(fields ?? {}) };
      process.stderr.write(`${JSON.stringify(line)}\n`);
    },
  };
}

export function createLogger(format: LogFormat = "human", debug = false): Logger & { consola: ConsolaInstance } {
  const consola = createConsola({
    level: debug ? 4 : 3,
    ...(format === "json" ? { reporters: [jsonReporter()] } : {}),
    formatOptions: { date: true, colors: process.stderr.isTTY ?? false, compact: true },
    stdout: process.stderr,
    stderr: process.stderr,
  });
  const human = (message: string, fields?: Record<string, unknown>) =>
    fields && Object.keys(fields).length
      ? `${message} ${Object.entries(fields)
          .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
          .join(" ")}`
      : message;
  const emit = (level: "info" | "warn" | "error" | "debug") => (message: string, fields?: Record<string, unknown>) => {
    if (format === "json") consola[level](message, fields ?? {});
    else consola[level](human(message, fields));
  };
  return { consola, info: emit("info"), warn: emit("warn"), error: emit("error"), debug: emit("debug") };
}
