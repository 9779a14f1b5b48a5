// Step "locations": where the request's artifacts and database may be, checked with host names
// resolved, before anything is fetched or recorded. A refusal fails the attempt naming the field,
// and nothing (not even the log) is written to the refused places.

import { CONTAINER_IMAGE_LABEL, isRegistryReference } from "../../container/apptainer.ts";
import { checkEndpoint, type LocationPolicy } from "../../request/location-policy.ts";
import { checkLocationResolved, connectHostOf, resolveChecked } from "../../request/resolve-host.ts";
import type { Request } from "../../request/model.ts";
import { checkDatabase } from "../../status/experiment-record.ts";
import type { AttemptStep } from "../attempt-step.ts";
import type { TaskContext } from "../context.ts";

export const locationsStep: AttemptStep = {
  name: "locations",
  async prepare(s) {
    try {
      await checkLocations(s.request, locationPolicy(s.ctx, s.control.source), s.ctx.runnerEnv);
    } catch (err) {
      s.locationsRefused = true;
      throw err;
    }
  },
};

/**
 * Where a request's artifacts and database may live: never cloud metadata or link-local
 * addresses; loopback and private ranges only with --allow-private-endpoints; file: paths under
 * --file-storage-roots, or, without it, under the runner's own storage root for requests from
 * local queues (their writers share this machine) and nowhere for requests from brokers.
 */
export function locationPolicy(ctx: TaskContext, source: string | undefined): LocationPolicy {
  const roots = ctx.fileStorageRoots ?? [];
  const local = source === "local" || source === undefined;
  return {
    allowedFileRoots: roots.length ? roots : local ? (ctx.localFileStorageRoots ?? []) : [],
    allowPrivate: ctx.allowPrivateEndpoints ?? false,
  };
}

/** Every location of the request through the rules, host names resolved: RequestError naming the field. */
async function checkLocations(
  request: Request,
  policy: LocationPolicy,
  env: Record<string, string | undefined>,
): Promise<void> {
  for (const a of Object.values(request.experiment.artifacts)) {
    if (a.label === CONTAINER_IMAGE_LABEL && isRegistryReference(a.qualified)) continue;
    await checkLocationResolved(`experiment.artifacts.${a.label}.qualified`, a.qualified, policy, {
      mutable: a.mutable,
    });
  }
  // An S3 server's endpoint (used for every s3:// artifact, whatever its spelling); a local
  // storage root (file:) is checked through its artifacts.
  const endpoint = request.config.storageEndpoint;
  const usesS3 = Object.values(request.experiment.artifacts).some((a) => /^s3:/i.test(a.qualified));
  if (endpoint && (usesS3 || /^https?:/i.test(endpoint))) {
    checkEndpoint("config.storage.endpoint", endpoint, policy);
    const host = connectHostOf(endpoint);
    if (host) await resolveChecked("config.storage.endpoint", endpoint, host, policy);
  }
  await checkDatabase(request, policy, { env });
}
