// Builds a request in the studioml client's format, with the standard artifact set.

import { quoteShellWord } from "../request/shell-words.ts";

export type SubmitSpec = {
  key: string;
  script: string;
  args: string[];
  pythonenv: string[];
  pythonver: string;
  resources: { cpus: number; ram: string; hdd: string; gpus: number };
  maxDuration?: string;
  lifetime?: string;
  saveFrequency?: string;
  env: Record<string, string>;
  workspaceKey: string;
  /** Maps a storage key to the artifact's `qualified` location. */
  locationOf: (key: string) => string;
  bucket?: string;
  /** The artifacts' `credentials` (S3: `{aws: {access_key, secret_access_key, region?}}`). */
  credentials?: Record<string, unknown>;
  storage: Record<string, unknown>;
};

export const MUTABLE_LABELS = ["output", "modeldir", "tb", "retval", "_metrics", "_metadata", "_results"];

export function buildRequest(spec: SubmitSpec): Record<string, unknown> {
  const artifact = (key: string, mutable: boolean) => ({
    unpack: true,
    mutable,
    key,
    qualified: spec.locationOf(key),
    ...(spec.bucket ? { bucket: spec.bucket } : {}),
    ...(spec.credentials ? { credentials: spec.credentials } : {}),
  });
  const artifacts: Record<string, unknown> = { workspace: artifact(spec.workspaceKey, false) };
  for (const label of MUTABLE_LABELS) artifacts[label] = artifact(`experiments/${spec.key}/${label}.tar`, true);
  const now = Date.now() / 1000;
  return {
    experiment: {
      key: spec.key,
      args: spec.args.map(quoteShellWord),
      filename: spec.script,
      pythonenv: spec.pythonenv,
      project: null,
      pythonver: spec.pythonver,
      resources_needed: spec.resources,
      status: "waiting",
      time_added: now,
      time_started: null,
      time_last_checkpoint: now,
      time_finished: null,
      info: {},
      git: null,
      metric: null,
      max_duration: spec.maxDuration ?? null,
      owner: process.env.USER ?? "guest",
      from_compl_service: false,
      artifacts,
    },
    config: {
      storage: spec.storage,
      saveWorkspaceFrequency: spec.saveFrequency ?? "1m",
      experimentLifetime: spec.lifetime ?? null,
      resources_needed: spec.resources,
      env: spec.env,
      submitted_by: "studio-runner submit",
    },
  };
}
