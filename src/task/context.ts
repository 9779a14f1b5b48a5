// What an attempt needs from the runner that hosts it.

import type { VenvCache } from "../env/venv-cache.ts";
import type { CgroupSupport } from "../exec/cgroup.ts";
import type { JobUser } from "../sandbox/job-user.ts";
import type { SandboxSettings } from "../sandbox/launch.ts";
import type { RequestReader } from "../request/read-request.ts";
import type { ArtifactCache } from "../storage/artifact-cache.ts";
import type { RunnerEvents } from "../observe/events.ts";
import type { RequestAdmission } from "../request/admission.ts";
import type { StorageIdentitySetting } from "../storage/storage-identity.ts";
import type { Logger } from "../log/logger.ts";
import type { Stores } from "../storage/stores.ts";
import type { AttemptClock } from "./attempt-clock.ts";

export type TaskContext = {
  workingDir: string;
  /** This runner process's identity, recorded with each attempt (see orphans.ts). */
  runnerId: string;
  host: string;
  runnerEnv: Record<string, string | undefined>;
  venvs: VenvCache;
  artifacts: ArtifactCache;
  allowEnvSecrets: boolean;
  /** Cap on any experiment's run time; 0 = none. */
  maxDurationMs: number;
  keepDirectories: boolean;
  /** How often a running experiment's database record is read for a user's "stopped" (default 5 s). */
  statusPollMs?: number;
  /** --sandbox bwrap (or auto where bwrap works): how experiments are wrapped (and, runner root, the user they run
   * as); absent: they run unsandboxed. */
  sandbox?: SandboxSettings;
  /** Where experiments' RAM and CPU limits are enforced; absent or "none": not enforced. */
  cgroups?: CgroupSupport;
  /** --file-storage-roots: where file: artifacts and local databases may live, for every queue. */
  fileStorageRoots?: string[];
  /** Opens and parses a message (envelopes per --encrypt-dir etc.); plain parsing when absent. */
  readRequest?: RequestReader;
  /** --google-certs, for Firebase experiment records. */
  googleCertsDir?: string;
  log: Logger;
  /** Where the attempt says what happens (metrics, status page, response reports listen). */
  events?: RunnerEvents;
  /** --max-request-age and replay protection: checked by the runner before an attempt starts. */
  admission?: RequestAdmission;
  /** Why a queue must not be served now (its signing key file stopped parsing); undefined: serve it. */
  queueRefusal?: (queue: string) => string | undefined;
  /** --storage-identity and --storage-identity-allow: whose identity serves storage of requests that bring no
   * credentials (absent: only the request's). */
  storageIdentity?: StorageIdentitySetting;
  /** Without --file-storage-roots: where file: locations of requests from local queues may live (the runner's own
   * storage root). */
  localFileStorageRoots?: string[];
  /** --allow-private-endpoints: requests may name loopback and private-range hosts (never link-local or metadata). */
  allowPrivateEndpoints?: boolean;
  /** --sandbox none with an explicit --job-user (runner root): the user jobs run as; absent: the runner's own. */
  jobUser?: JobUser;
  /** The runner's object stores (its GCS clients); absent: the default configuration's. */
  stores?: Stores;
  /** The attempts' clock and timers (tests move time by hand); absent: the process's own. */
  clock?: AttemptClock;
};
