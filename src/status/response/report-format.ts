// The documents sent to `<queue>_response`: the Go runner's reports.proto `Report` written as
// JSON (protocol.md §7). The oneof `payload` appears as its member's key (`progress` or
// `logging`), enums by name and times as RFC 3339, which is how the protobuf JSON mapping writes
// that message: `json_format.Parse(text, reports_pb2.Report())` reads these reports.

/** reports.proto TaskState, by name; the numbers are the proto's. */
export const TASK_STATE = { Prestart: 0, Started: 1, Stopping: 2, Failed: 20, Success: 21 } as const;
export type TaskState = keyof typeof TASK_STATE;

/** reports.proto LogSeverity, by name. */
export type LogSeverity = "DEFAULT" | "TRACE" | "DEBUG" | "INFO" | "WARNING" | "ERROR" | "FATAL";

export type ReportIdentity = {
  /** The experiment key. */
  experimentId: string;
  /** This attempt (changes between attempts of one experiment). */
  uniqueId: string;
  /** The host (or pod) running the attempt. */
  executorId: string;
};

export type ProgressPayload = {
  time: string;
  /** JSON emitted by the experiment; empty for the runner's own state changes. */
  json: string;
  state: TaskState;
  error?: { msg: string; code: number };
};

export type LoggingPayload = {
  time: string;
  severity: LogSeverity;
  message: string;
  fields: Record<string, string>;
};

export type Report = {
  time: string;
  experiment_id: string;
  unique_id: string;
  executor_id: string;
} & ({ progress: ProgressPayload } | { logging: LoggingPayload });

const envelope = (who: ReportIdentity, time: string) => ({
  time,
  experiment_id: who.experimentId,
  unique_id: who.uniqueId,
  executor_id: who.executorId,
});

export function progressReport(
  who: ReportIdentity,
  state: TaskState,
  error?: { msg: string; code: number },
  now = new Date(),
): Report {
  const time = now.toISOString();
  const progress: ProgressPayload = { time, json: "", state };
  if (error) progress.error = error;
  return { ...envelope(who, time), progress };
}

export function loggingReport(
  who: ReportIdentity,
  message: string,
  fields: Record<string, string>,
  severity: LogSeverity = "INFO",
  now = new Date(),
): Report {
  const time = now.toISOString();
  return { ...envelope(who, time), logging: { time, severity, message, fields } };
}
