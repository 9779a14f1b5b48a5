// Typed faults: every failure is either retryable (infrastructure; the request is requeued and
// its delivery count grows) or permanent (the request itself is at fault; it is kept with the reason).

export type FaultContext = {
  queue?: string;
  experiment?: string;
  attempt?: string;
  phase?: string;
  field?: string;
  [key: string]: string | number | undefined;
};

export abstract class RunnerFault extends Error {
  abstract readonly retryable: boolean;
  context: FaultContext;
  constructor(message: string, context: FaultContext = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.context = context;
  }
  with(context: FaultContext): this {
    this.context = { ...context, ...this.context };
    return this;
  }
}

/** Infrastructure trouble (storage down, disk full, shutdown): try again later. */
export class RetryableError extends RunnerFault {
  readonly retryable = true;
}

/** The request cannot be processed as sent: keep it in the failed place with this reason. */
export class PermanentError extends RunnerFault {
  readonly retryable = false;
}

/** A field of the request (or of the configuration) is missing or has a value we cannot use. */
/** Longest field path a message names; longer (attacker-made) paths keep their start and end. */
const MAX_FIELD_CHARS = 160;

export class RequestError extends PermanentError {
  constructor(field: string, value: unknown, problem: string) {
    const shown =
      field.length > MAX_FIELD_CHARS ? `${field.slice(0, 100)}…${field.slice(-(MAX_FIELD_CHARS - 101))}` : field;
    super(`${shown}: ${describeValue(value)} ${problem}`, { field: shown });
  }
}

/** An archive member or size that the safety rules refuse. */
export class ArchiveError extends PermanentError {}

/** A storage object that does not exist. Whether this is fatal depends on the artifact. */
export class NotFoundError extends PermanentError {
  constructor(readonly location: string) {
    super(`object not found: ${location}`);
  }
}

export function describeValue(value: unknown): string {
  if (value === undefined) return "(missing)";
  let text: string;
  try {
    text = typeof value === "string" ? JSON.stringify(value) : (JSON.stringify(value) ?? String(value));
  } catch {
    text = String(value);
  }
  return text.length > 120 ? `${text.slice(0, 117)}...` : text;
}

/** Classify any thrown value: unknown errors are treated as retryable infrastructure faults. */
export function asFault(err: unknown, context: FaultContext = {}): RunnerFault {
  if (err instanceof RunnerFault) return err.with(context);
  const message = err instanceof Error ? err.message : String(err);
  return new RetryableError(message, context, { cause: err });
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
