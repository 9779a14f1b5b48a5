// Run in a child process by tests of --sqs-default-account (the AWS SDK's default chain reads
// process.env, so each case gets an environment of its own): makes the SQS backend from the
// settings given as JSON in argv[2], the way the run command does, then publishes to, lists,
// receives from and acks the queue argv[3]. Prints one JSON line: what it saw, or the fault.
//   bun test/helpers/sqs-chain-probe.ts '{"sqs-default-account":true,...}' sqs_queue

import { errorMessage, PermanentError, RetryableError } from "../../src/errors.ts";
import { sqsBackendFromSettings, sqsSettingsProblems, type SqsSettings } from "../../src/queue/sqs/settings.ts";

const settings = JSON.parse(process.argv[2] ?? "{}") as SqsSettings & { "queue-match"?: string | RegExp };
if (typeof settings["queue-match"] === "string") settings["queue-match"] = new RegExp(settings["queue-match"]);
settings["max-deliveries"] ??= 3;
const queue = process.argv[3] ?? "sqs_probe";
const logs: string[] = [];
const log = { info: (m: string) => logs.push(`info ${m}`), warn: (m: string) => logs.push(`warn ${m}`) };

const problems = sqsSettingsProblems(settings);
const backend = problems.length ? undefined : sqsBackendFromSettings(settings, log);
let result: Record<string, unknown> = { problems, logs };
if (backend) {
  try {
    await backend.publish(queue, JSON.stringify({ probe: queue }));
    const names = await backend.discover();
    const delivery = await backend.open(queue).receive();
    const body = delivery ? new TextDecoder().decode(delivery.body) : undefined;
    await delivery?.ack();
    result = { ...result, names, body };
  } catch (err) {
    const kind = err instanceof PermanentError ? "permanent" : err instanceof RetryableError ? "retryable" : "other";
    result = { ...result, error: errorMessage(err), kind };
  } finally {
    await backend.close();
  }
}
console.log(JSON.stringify(result));
