// The studioml request as the runner uses it, after tolerant parsing (see protocol.md §1).

export type AwsCredentials = {
  accessKey: string;
  secretAccessKey: string;
  sessionToken?: string;
  region?: string;
};

export type Credentials = { aws?: AwsCredentials };

export type Artifact = {
  label: string;
  /** Where the object lives: s3://, gs://, file: or (for url artifacts) http(s)://. */
  qualified: string;
  key?: string;
  bucket?: string;
  mutable: boolean;
  unpack: boolean;
  credentials?: Credentials;
  /** Per-artifact checkpoint interval. */
  saveFrequencyMs?: number;
  hash?: string;
};

export type Resources = {
  cpus: number;
  ramBytes: number;
  hddBytes: number;
  gpus: number;
  gpuMemBytes: number;
};

export type Experiment = {
  key: string;
  /** Script relative to the workspace; "-m" = module run; null = container-only job. */
  filename: string | null;
  /** Arguments after shell-word splitting. */
  args: string[];
  pythonenv: string[];
  pythonver: string;
  resources: Resources;
  maxDurationMs?: number;
  timeAddedMs?: number;
  artifacts: Record<string, Artifact>;
  /** The experiment object as received, for status records. */
  raw: Record<string, unknown>;
};

export type RunConfig = {
  env: Record<string, string>;
  pip: string[];
  saveWorkspaceFrequencyMs?: number;
  experimentLifetimeMs?: number;
  storageEndpoint?: string;
  storageCredentials?: Credentials;
  raw: Record<string, unknown>;
};

export type Request = { experiment: Experiment; config: RunConfig };
