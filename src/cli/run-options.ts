// The settings of `run` (and of `env`, which shares its config file): the common table plus each
// queue backend's, the envelopes' and the Kubernetes drain's; RunSettings is their typed reading.

import { RUN_OPTIONS } from "../config/options.ts";
import type { SettingsOf } from "../config/settings.ts";
import { K8S_OPTIONS } from "../k8s/settings.ts";
import { PUBSUB_OPTIONS } from "../queue/pubsub/settings.ts";
import { SQS_OPTIONS } from "../queue/sqs/settings.ts";
import { ENVELOPE_OPTIONS } from "../request/envelope/options.ts";

export const ALL_RUN_OPTIONS = [
  ...RUN_OPTIONS,
  ...SQS_OPTIONS,
  ...PUBSUB_OPTIONS,
  ...ENVELOPE_OPTIONS,
  ...K8S_OPTIONS,
] as const;

export type RunSettings = SettingsOf<typeof ALL_RUN_OPTIONS>;
