// Where reports go: one ResponsePublisher per queue backend, provided by the backend itself
// (QueueBackend.responsePublisher), each sending to the report queue `<queue>_response` of the
// system the request came from, and only when that queue already exists (the runner never
// creates one: an experimenter who wants reports makes the queue).

/** The report queue of a work queue (protocol.md §4: names ending `_response` are never work). */
export const responseQueueName = (workQueue: string) => `${workQueue}_response`;

/** A report queue that exists, ready to take report bodies. */
export interface ResponseTarget {
  /** Where, for the runner's log (no credentials). */
  readonly where: string;
  send(body: Uint8Array): Promise<void>;
}

export interface ResponsePublisher {
  /** The queue backend kind this publisher serves ("local", "rabbitmq", "sqs", "pubsub"). */
  readonly kind: string;
  /** The report queue of `workQueue` when it exists; undefined when it does not. Throws when it cannot tell. */
  target(workQueue: string): Promise<ResponseTarget | undefined>;
  close(): Promise<void>;
}
