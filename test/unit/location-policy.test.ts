// Covers src/request/location-policy.ts: which `qualified` locations and storage endpoints a request may use.
import { describe, expect, test } from "bun:test";
import { RequestError } from "../../src/errors.ts";
import { checkEndpoint, checkLocation, classifyHost, type LocationPolicy } from "../../src/request/location-policy.ts";

const FIELD = "experiment.artifacts.workspace.qualified";
const strict: LocationPolicy = { allowedFileRoots: ["/srv/studio/storage"], allowLoopback: false };
const loopbackOk: LocationPolicy = { ...strict, allowLoopback: true };

function refusal(qualified: string, policy: LocationPolicy = strict, use: { mutable?: boolean } = {}): RequestError {
  let caught: unknown;
  try {
    checkLocation(FIELD, qualified, policy, use);
  } catch (err) {
    caught = err;
  }
  if (!(caught instanceof RequestError)) throw new Error(`${qualified}: expected a RequestError, got ${String(caught)}`);
  expect(caught.retryable).toBe(false);
  expect(caught.context.field).toBe(FIELD);
  expect(caught.message).toStartWith(`${FIELD}: `);
  return caught;
}

const allowed = (qualified: string, policy: LocationPolicy = strict, use: { mutable?: boolean } = {}) =>
  expect(() => checkLocation(FIELD, qualified, policy, use)).not.toThrow();

describe("schemes", () => {
  test("file:, s3:, gs:, http(s): are allowed", () => {
    allowed("file:///srv/studio/storage/bucket/blobstore/x.tar");
    allowed("s3://studioml-artifacts/blobstore/x.tar");
    allowed("s3://s3.us-west-2.amazonaws.com/bucket/key.tar");
    allowed("S3://minio.example.org:9000/bucket/key.tar");
    allowed("gs://my-bucket/experiments/k/output.tar");
    allowed("https://example.com/data.tar");
    allowed("http://files.example.org:8080/a/b.tgz");
  });

  test("other schemes are refused, naming field and value", () => {
    for (const q of ["ftp://example.com/x", "gopher://x/", "javascript:alert(1)", "data:text/plain,hi", "jar:file:///x!/y", "docker://ubuntu", "unix:/var/run/docker.sock", "/srv/studio/storage/x", "x"]) {
      const err = refusal(q);
      expect(err.message).toContain(JSON.stringify(q));
    }
  });

  test("http(s) only for immutable artifacts", () => {
    allowed("https://example.com/data.tar", strict, { mutable: false });
    const err = refusal("https://example.com/out.tar", strict, { mutable: true });
    expect(err.message).toContain("immutable");
  });

  test("control characters and whitespace are refused", () => {
    refusal("https://example.com/a\r\nHost: evil");
    refusal("s3://bucket/key with space");
    refusal("file:///srv/studio/storage/a\u0000b");
  });
});

describe("file: locations", () => {
  test("under an allowed root, in both the client's file://tmp/… and the URL file:/// forms", () => {
    allowed("file:///srv/studio/storage/bucket/blobstore/x.tar");
    allowed("file://srv/studio/storage/bucket/experiments/k/output.tar");
    allowed("file:/srv/studio/storage/b/k");
    allowed("file:////srv//studio/storage/./b/k");
    allowed("file:///srv/studio/storage/b/k", { allowedFileRoots: ["/srv/studio/storage/"], allowLoopback: false });
  });

  test("outside every root, or the root itself, is refused", () => {
    for (const q of ["file:///etc/passwd", "file:///srv/studio/storage-evil/x", "file:///srv/studio/storage", "file:///srv/studio/storage/", "file:///srv/studio", "file:///root/.aws/credentials"]) {
      const err = refusal(q);
      expect(err.message).toContain("/srv/studio/storage");
    }
  });

  test("'..' is refused, also percent-encoded", () => {
    for (const q of ["file:///srv/studio/storage/../../etc/passwd", "file:///srv/studio/storage/b/../k", "file:///srv/studio/storage/%2e%2e/x", "file:///srv/studio/storage/%2E%2E%2f..%2Fetc"]) {
      expect(refusal(q).message).toContain("..");
    }
  });

  test("malformed escapes and NUL are refused", () => {
    refusal("file:///srv/studio/storage/%zz");
    refusal("file:///srv/studio/storage/a%00b");
  });

  test("no roots: every file: location is refused", () => {
    const err = refusal("file:///srv/studio/storage/b/k", { allowedFileRoots: [], allowLoopback: false });
    expect(err.message).toContain("allows no directory");
  });

  test("several roots", () => {
    const policy = { allowedFileRoots: ["/a/storage", "/b/other"], allowLoopback: false };
    allowed("file:///a/storage/x", policy);
    allowed("file:///b/other/y", policy);
    refusal("file:///c/z", policy);
  });
});

describe("hosts", () => {
  const metadataUrls = [
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://169.254.170.2/v2/credentials",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://METADATA.google.internal./x",
    "http://metadata/computeMetadata/v1/",
    "http://100.100.100.200/latest/meta-data/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://[fe80::1]/x",
    "http://[::ffff:169.254.169.254]/x",
    "http://[64:ff9b::a9fe:a9fe]/x",
    "http://2852039166/latest/", // 169.254.169.254 as one decimal number
    "http://0xa9.0xfe.0xa9.0xfe/x",
    "http://0251.0376.0251.0376/x", // octal
    "http://169.254.169.254:80/x",
    "http://instance-data/latest/",
  ];

  test("link-local and metadata addresses are refused, even with loopback allowed", () => {
    for (const q of metadataUrls) {
      const err = refusal(q, loopbackOk);
      expect(err.message).toContain("metadata");
    }
  });

  test("metadata hosts in s3://host/bucket/key and in storage endpoints are refused", () => {
    refusal("s3://169.254.169.254/bucket/key", loopbackOk);
    refusal("s3://169.254.169.254:80/bucket/key", loopbackOk);
    refusal("s3://[fd00:ec2::254]/bucket/key", loopbackOk);
    expect(() => checkEndpoint("config.storage.endpoint", "http://169.254.169.254", loopbackOk)).toThrow(RequestError);
    expect(() => checkEndpoint("config.storage.endpoint", "169.254.169.254:9000", loopbackOk)).toThrow(/config\.storage\.endpoint/);
    expect(() => checkEndpoint("config.storage.endpoint", "http://metadata.google.internal", loopbackOk)).toThrow(RequestError);
    expect(() => checkEndpoint("config.storage.endpoint", "ftp://example.com", loopbackOk)).toThrow(RequestError);
    expect(() => checkEndpoint("config.storage.endpoint", "https://s3.example.org:9000", strict)).not.toThrow();
  });

  test("loopback only with allowLoopback", () => {
    const loopbacks = [
      "http://127.0.0.1:8080/x.tar",
      "http://127.1.2.3/x.tar",
      "http://localhost:9000/x.tar",
      "http://foo.localhost/x.tar",
      "http://[::1]:8080/x.tar",
      "http://0.0.0.0:9000/x.tar",
      "http://2130706433/x.tar", // 127.0.0.1 in decimal
      "http://[::ffff:127.0.0.1]/x.tar",
    ];
    for (const q of loopbacks) {
      expect(refusal(q).message).toContain("loopback");
      allowed(q, loopbackOk);
    }
    // The captured client message uses a loopback S3 server.
    refusal("s3://127.0.0.1:33504/studioml-artifacts/blobstore/x.tar");
    allowed("s3://127.0.0.1:33504/studioml-artifacts/blobstore/x.tar", loopbackOk);
    expect(() => checkEndpoint("config.storage.endpoint", "http://127.0.0.1:33504", strict)).toThrow(/loopback/);
    expect(() => checkEndpoint("config.storage.endpoint", "http://127.0.0.1:33504", loopbackOk)).not.toThrow();
  });

  test("userinfo is refused and its password is not shown", () => {
    for (const q of ["https://user:hunter2@example.com/x.tar", "http://admin:hunter2@127.0.0.1/x", "https://@example.com/x", "https://token@example.com/x"]) {
      const err = refusal(q, loopbackOk);
      expect(err.message).toContain("user:password@");
      expect(err.message).not.toContain("hunter2");
    }
    expect(refusal("s3://AKIA:hunter2@minio:9000/bucket/key", loopbackOk).message).not.toContain("hunter2");
    expect(() => checkEndpoint("config.storage.endpoint", "http://ak:hunter2@minio:9000", loopbackOk)).toThrow(/user:password/);
  });

  test("gs:// names a bucket, never a host", () => {
    refusal("gs://169.254.169.254:80/key");
    refusal("gs://user@bucket/key");
    refusal("gs://bucket");
    allowed("gs://studioml-artifacts/blobstore/x.tar");
  });

  test("classifyHost", () => {
    expect(classifyHost("169.254.169.254")).toBe("metadata");
    expect(classifyHost("[fd00:ec2::254]")).toBe("metadata");
    expect(classifyHost("fe80::abcd")).toBe("metadata");
    expect(classifyHost("127.0.0.1")).toBe("loopback");
    expect(classifyHost("::1")).toBe("loopback");
    expect(classifyHost("example.com")).toBe("public");
    expect(classifyHost("10.0.0.5")).toBe("public");
    expect(classifyHost("2001:db8::1")).toBe("public");
    expect(classifyHost("::ffff:a9fe:a9fe")).toBe("metadata");
  });
});
