// One AMQP connection opened and closed again, for `doctor`: proves the broker answers and takes
// these credentials and vhost. Errors come back with the password masked.

import amqp from "amqplib";
import { hostname } from "node:os";
import { errorMessage } from "../../errors.ts";
import { maskSecrets, type AmqpAddress } from "./broker-address.ts";

export class AmqpProbeError extends Error {}

export async function probeAmqpConnection(address: AmqpAddress, timeoutMs: number): Promise<void> {
  let model: amqp.ChannelModel;
  try {
    model = await amqp.connect(address.connect, {
      timeout: timeoutMs,
      clientProperties: { connection_name: `studio-runner doctor ${hostname()} pid ${process.pid}` },
    });
  } catch (err) {
    throw new AmqpProbeError(
      `cannot connect to RabbitMQ at ${address.redacted}: ${maskSecrets(errorMessage(err), address.secrets)}`,
    );
  }
  model.on("error", () => undefined);
  await model.close().catch(() => undefined);
}
