// --storage-identity and --storage-identity-allow: how entries parse, which queue and place an
// entry grants, and what is refused (with the flag named).

import { describe, expect, test } from "bun:test";
import {
  describeStorageIdentity,
  parseIdentityGrants,
  storageIdentityFor,
  storageIdentityProblems,
  storageIdentitySetting,
  type StoragePlace,
} from "../../src/storage/storage-identity.ts";

const s3 = (bucket: string, key: string, host?: string): StoragePlace => ({ scheme: "s3", host, bucket, key });

describe("--storage-identity-allow entries", () => {
  test("queue prefix, optional queue kind, s3 with or without a server, gs", () => {
    const grants = parseIdentityGrants(
      " team_a=s3://data/shared/ , rabbitmq:rmq_b=s3://127.0.0.1:9000/bkt/p/,=gs://g/x/, sqs:=s3://whole-bucket",
    );
    expect(grants.map(({ kind, queuePrefix, place }) => ({ kind, queuePrefix, place }))).toEqual([
      { kind: undefined, queuePrefix: "team_a", place: s3("data", "shared/") },
      { kind: "rabbitmq", queuePrefix: "rmq_b", place: s3("bkt", "p/", "127.0.0.1:9000") },
      { kind: undefined, queuePrefix: "", place: { scheme: "gs", bucket: "g", key: "x/" } },
      { kind: "sqs", queuePrefix: "", place: s3("whole-bucket", "") },
    ]);
  });

  test("bad entries are named", () => {
    expect(() => parseIdentityGrants("team_a")).toThrow(/"team_a" is not queue-prefix=/);
    expect(() => parseIdentityGrants("q=file:///tmp/x")).toThrow(
      /s3:\/\/\[host:port\/\]bucket\/prefix or gs:\/\/bucket\/prefix/,
    );
    expect(() => parseIdentityGrants("q=s3://b/a/../c/")).toThrow(/'\.\.'/);
    expect(storageIdentityProblems("runner", "q=http://x/y")[0]).toContain("--storage-identity-allow");
    expect(storageIdentityProblems("runner", "q=s3://b/p/")).toEqual([]);
  });
});

describe("the decision", () => {
  const runner = (allow: string, queue: string, kind = "local") =>
    storageIdentityFor(storageIdentitySetting("runner", allow), queue, kind);

  test("--storage-identity request (the default) refuses every place, naming the flag; the allow-list is ignored", () => {
    const d = storageIdentityFor(storageIdentitySetting("request", "q=s3://b/"), "q", "local");
    expect(d.refusal(s3("b", "k"))).toContain("--storage-identity request");
    expect(storageIdentityFor(undefined, "q", "local").refusal(s3("b", "k"))).toContain("--storage-identity");
    expect(describeStorageIdentity(storageIdentitySetting("request", "q=s3://b/")).warn[0]).toContain("ignored");
  });

  test("queue prefix: the start of the queue name; kind: only that backend's queues", () => {
    expect(runner("team_a=s3://b/p/", "team_a_exp").refusal(s3("b", "p/k"))).toBeUndefined();
    expect(runner("team_a=s3://b/p/", "team_b_exp").refusal(s3("b", "p/k"))).toContain('for queue "team_b_exp"');
    expect(runner("team_a=s3://b/p/", "x_team_a").refusal(s3("b", "p/k"))).toBeDefined();
    expect(runner("rabbitmq:team_a=s3://b/p/", "team_a", "sqs").refusal(s3("b", "p/k"))).toBeDefined();
    expect(runner("rabbitmq:team_a=s3://b/p/", "team_a", "rabbitmq").refusal(s3("b", "p/k"))).toBeUndefined();
    expect(runner("=s3://b/p/", "anything").refusal(s3("b", "p/k"))).toBeUndefined();
  });

  test("place: same scheme, server, bucket; key under the prefix without '.' or '..' segments", () => {
    const d = runner("q=s3://127.0.0.1:9000/b/p/", "q");
    expect(d.refusal(s3("b", "p/k.tar", "127.0.0.1:9000"))).toBeUndefined();
    expect(d.refusal(s3("b", "p/k.tar"))).toContain("outside --storage-identity-allow"); // AWS, not that server
    expect(d.refusal(s3("b", "p/k.tar", "127.0.0.1:9001"))).toBeDefined();
    expect(d.refusal(s3("other", "p/k.tar", "127.0.0.1:9000"))).toBeDefined();
    expect(d.refusal(s3("b", "q/k.tar", "127.0.0.1:9000"))).toBeDefined();
    expect(d.refusal(s3("b", "p/../q/k.tar", "127.0.0.1:9000"))).toBeDefined();
    expect(d.refusal(s3("b", "p//k.tar", "127.0.0.1:9000"))).toBeDefined();
    expect(d.refusal({ scheme: "gs", bucket: "b", key: "p/k.tar" })).toBeDefined();
    const aws = runner("q=s3://b/p/", "q");
    expect(aws.refusal(s3("b", "p/k"))).toBeUndefined();
    expect(aws.refusal(s3("b", "p/k", "evil.example:9000"))).toBeDefined(); // a request-chosen endpoint is another server
  });

  test("start-up lines say what is lent, and warn about prefixes that are not folders", () => {
    const lines = describeStorageIdentity(storageIdentitySetting("runner", "q=s3://b/p"));
    expect(lines.info[0]).toContain('queues "q…" → s3://b/p…');
    expect(lines.warn[0]).toContain('not ending in "/"');
    expect(describeStorageIdentity(storageIdentitySetting("runner", "")).warn[0]).toContain("serves no request");
  });
});
