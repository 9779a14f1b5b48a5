// The captured studioml client message pointed at a real local S3 server: only host:port, the
// workspace key (sha256 of the tar the test makes, uploaded to blobstore/) and time_added change.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Readable } from "node:stream";
import { S3Store } from "../../src/storage/s3/s3-store.ts";
import { FIXTURE, makeTar, sha256File, type Sandbox } from "./e2e.ts";
import type { S3Server } from "./s3-server.ts";

export const FIXTURE_HOST = "127.0.0.1:33504";
export const FIXTURE_BUCKET = "studioml-artifacts";
export const CLIENT_KEYS = { accessKey: "AKIAEXAMPLEKEY", secretAccessKey: "exampleSecretKey123" };
export const RESULT_LABELS = ["output", "modeldir", "retval", "tb", "_metrics", "_metadata"];

export const clientStore = (server: S3Server) =>
  new S3Store({ credentials: { aws: { ...CLIENT_KEYS, region: "us-west-2" } }, endpoint: server.endpoint });

/**
 * The captured message on `server`. `freshKey`: under a key of its own, as the client gives every
 * new run one (a runner refuses a key it already completed as a replay).
 */
export async function fixtureOnS3(
  server: S3Server,
  sb: Sandbox,
  files: Record<string, string>,
  options: { freshKey?: boolean } = {},
) {
  let raw = readFileSync(FIXTURE, "utf8");
  if (!raw.includes(FIXTURE_HOST)) throw new Error(`the fixture no longer names ${FIXTURE_HOST}`);
  if (options.freshKey)
    raw = raw.replaceAll(JSON.parse(raw).experiment.key, `${Math.floor(Date.now() / 1000)}_${crypto.randomUUID()}`);
  const message = JSON.parse(raw.replaceAll(FIXTURE_HOST, server.host));
  const tarPath = join(sb.dir, "workspace.tar");
  makeTar(tarPath, files);
  const wsKey = `blobstore/${sha256File(tarPath)}.tar`;
  const ws = message.experiment.artifacts.workspace;
  ws.qualified = ws.qualified.replace(ws.key, wsKey);
  ws.key = wsKey;
  await clientStore(server).put(ws.qualified, Readable.from([readFileSync(tarPath)]));
  message.experiment.time_added = Date.now() / 1000;
  message.experiment.pythonenv = []; // the whole pip freeze is exercised by fixture.test.ts
  const key = message.experiment.key as string;
  const location = (label: string) => `s3://${server.host}/${FIXTURE_BUCKET}/experiments/${key}/${label}.tar`;
  return { message, key, location };
}
