// Covers src/request/location-policy.ts: which `qualified` locations and storage endpoints a request may use.
import { describe, expect, test } from "bun:test";
import { RequestError } from "../../src/errors.ts";
import { networkInterfaces } from "node:os";
import { RetryableError } from "../../src/errors.ts";
import {
  checkEndpoint,
  checkFilePath,
  checkLocation,
  classifyHost,
  type LocationPolicy,
} from "../../src/request/location-policy.ts";
import { checkLocationResolved, connectHostOf, resolveChecked, type Resolver } from "../../src/request/resolve-host.ts";

const FIELD = "experiment.artifacts.workspace.qualified";
const strict: LocationPolicy = { allowedFileRoots: ["/srv/studio/storage"], allowPrivate: false };
const privateOk: LocationPolicy = { ...strict, allowPrivate: true };

function refusal(qualified: string, policy: LocationPolicy = strict, use: { mutable?: boolean } = {}): RequestError {
  let caught: unknown;
  try {
    checkLocation(FIELD, qualified, policy, use);
  } catch (err) {
    caught = err;
  }
  if (!(caught instanceof RequestError))
    throw new Error(`${qualified}: expected a RequestError, got ${String(caught)}`);
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
    for (const q of [
      "ftp://example.com/x",
      "gopher://x/",
      "javascript:alert(1)",
      "data:text/plain,hi",
      "jar:file:///x!/y",
      "docker://ubuntu",
      "unix:/var/run/docker.sock",
      "/srv/studio/storage/x",
      "x",
    ]) {
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
    allowed("file:///srv/studio/storage/b/k", { allowedFileRoots: ["/srv/studio/storage/"], allowPrivate: false });
  });

  test("outside every root, or the root itself, is refused", () => {
    for (const q of [
      "file:///etc/passwd",
      "file:///srv/studio/storage-evil/x",
      "file:///srv/studio/storage",
      "file:///srv/studio/storage/",
      "file:///srv/studio",
      "file:///root/.aws/credentials",
    ]) {
      const err = refusal(q);
      expect(err.message).toContain("/srv/studio/storage");
    }
  });

  test("'..' is refused, also percent-encoded", () => {
    for (const q of [
      "file:///srv/studio/storage/../../etc/passwd",
      "file:///srv/studio/storage/b/../k",
      "file:///srv/studio/storage/%2e%2e/x",
      "file:///srv/studio/storage/%2E%2E%2f..%2Fetc",
    ]) {
      expect(refusal(q).message).toContain("..");
    }
  });

  test("malformed escapes and NUL are refused", () => {
    refusal("file:///srv/studio/storage/%zz");
    refusal("file:///srv/studio/storage/a%00b");
  });

  test("no roots: every file: location is refused", () => {
    const err = refusal("file:///srv/studio/storage/b/k", { allowedFileRoots: [], allowPrivate: false });
    expect(err.message).toContain("allows no directory");
  });

  test("several roots", () => {
    const policy = { allowedFileRoots: ["/a/storage", "/b/other"], allowPrivate: false };
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
      const err = refusal(q, privateOk);
      expect(err.message).toContain("metadata");
    }
  });

  test("metadata hosts in s3://host/bucket/key and in storage endpoints are refused", () => {
    refusal("s3://169.254.169.254/bucket/key", privateOk);
    refusal("s3://169.254.169.254:80/bucket/key", privateOk);
    refusal("s3://[fd00:ec2::254]/bucket/key", privateOk);
    expect(() => checkEndpoint("config.storage.endpoint", "http://169.254.169.254", privateOk)).toThrow(RequestError);
    expect(() => checkEndpoint("config.storage.endpoint", "169.254.169.254:9000", privateOk)).toThrow(
      /config\.storage\.endpoint/,
    );
    expect(() => checkEndpoint("config.storage.endpoint", "http://metadata.google.internal", privateOk)).toThrow(
      RequestError,
    );
    expect(() => checkEndpoint("config.storage.endpoint", "ftp://example.com", privateOk)).toThrow(RequestError);
    expect(() => checkEndpoint("config.storage.endpoint", "https://s3.example.org:9000", strict)).not.toThrow();
  });

  test("loopback only with allowPrivate (--allow-private-endpoints)", () => {
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
      allowed(q, privateOk);
    }
    // The captured client message uses a loopback S3 server.
    refusal("s3://127.0.0.1:33504/studioml-artifacts/blobstore/x.tar");
    allowed("s3://127.0.0.1:33504/studioml-artifacts/blobstore/x.tar", privateOk);
    expect(() => checkEndpoint("config.storage.endpoint", "http://127.0.0.1:33504", strict)).toThrow(/loopback/);
    expect(() => checkEndpoint("config.storage.endpoint", "http://127.0.0.1:33504", privateOk)).not.toThrow();
  });

  test("userinfo is refused and its password is not shown", () => {
    for (const q of [
      "https://user:hunter2@example.com/x.tar",
      "http://admin:hunter2@127.0.0.1/x",
      "https://@example.com/x",
      "https://token@example.com/x",
    ]) {
      const err = refusal(q, privateOk);
      expect(err.message).toContain("user:password@");
      expect(err.message).not.toContain("hunter2");
    }
    expect(refusal("s3://AKIA:hunter2@minio:9000/bucket/key", privateOk).message).not.toContain("hunter2");
    expect(() => checkEndpoint("config.storage.endpoint", "http://ak:hunter2@minio:9000", privateOk)).toThrow(
      /user:password/,
    );
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
    expect(classifyHost("127.0.0.1")).toBe("private");
    expect(classifyHost("::1")).toBe("private");
    expect(classifyHost("example.com")).toBe("public");
    expect(classifyHost("10.0.0.5")).toBe("private");
    expect(classifyHost("8.8.8.8")).toBe("public");
    expect(classifyHost("2001:db8::1")).toBe("private"); // documentation range
    expect(classifyHost("2606:4700::1111")).toBe("public");
    expect(classifyHost("::ffff:a9fe:a9fe")).toBe("metadata");
  });
});

describe("private ranges (--allow-private-endpoints)", () => {
  test("RFC 1918, CGNAT, ULA, IPv4-mapped, 0.0.0.0 and other non-global ranges are private; link-local stays metadata", () => {
    for (const h of [
      "10.1.2.3",
      "172.16.0.1",
      "172.31.255.255",
      "192.168.1.1",
      "100.64.0.1",
      "100.127.255.254",
      "0.0.0.0",
      "198.18.0.1",
      "192.0.2.10",
      "224.0.0.1",
      "255.255.255.255",
      "fc00::1",
      "fd12:3456::1",
      "::",
      "::ffff:8.8.8.8",
      "::ffff:10.0.0.1",
      "fec0::1",
      "ff02::1",
      "2001:db8::1",
      "64:ff9b:1::1",
      "2002:0a00:0001::1",
    ]) {
      expect(`${h}: ${classifyHost(h)}`).toBe(`${h}: private`);
    }
    for (const h of [
      "8.8.8.8",
      "1.1.1.1",
      "172.32.0.1",
      "100.128.0.1",
      "2606:4700::1111",
      "64:ff9b::808:808",
      "2002:0808:0808::1",
    ])
      expect(`${h}: ${classifyHost(h)}`).toBe(`${h}: public`);
    for (const h of [
      "169.254.169.254",
      "169.254.0.1",
      "fe80::1",
      "::ffff:169.254.169.254",
      "64:ff9b::a9fe:a9fe",
      "2002:a9fe:a9fe::1",
      "100.100.100.200",
    ]) {
      expect(`${h}: ${classifyHost(h)}`).toBe(`${h}: metadata`);
    }
  });

  test("this machine's own interface addresses count as private (its services bound to 0.0.0.0)", () => {
    const own = Object.values(networkInterfaces())
      .flat()
      .map((i) => i!.address);
    for (const a of own) expect(classifyHost(a)).not.toBe("public");
  });

  test("private hosts are refused without the flag and allowed with it; metadata never", () => {
    for (const q of [
      "http://10.0.0.5/x.tar",
      "http://[fd00::2]/x",
      "s3://192.168.1.10:9000/b/k",
      "http://[::ffff:8.8.8.8]/x",
    ]) {
      expect(refusal(q).message).toContain("--allow-private-endpoints");
      allowed(q, privateOk);
    }
    expect(() => checkEndpoint("config.storage.endpoint", "http://172.20.0.3:9000", strict)).toThrow(/private/);
    expect(() => checkEndpoint("config.storage.endpoint", "http://172.20.0.3:9000", privateOk)).not.toThrow();
  });
});

describe("file: roots and system paths", () => {
  test("/proc, /sys and /dev are refused even when a root contains them", () => {
    const everywhere = { allowedFileRoots: ["/"], allowPrivate: false };
    for (const q of [
      "file:///proc/self/environ",
      "file://proc/1/cmdline",
      "file:///sys/kernel/x",
      "file:///dev/mem",
      "file:///dev",
    ]) {
      expect(refusal(q, everywhere).message).toContain("/proc, /sys, /dev");
    }
    allowed("file:///srv/x", everywhere);
  });

  test("checkFilePath: the local database's record file under the roots", () => {
    expect(() =>
      checkFilePath(
        "config.database.endpoint",
        "/srv/studio/storage",
        "/srv/studio/storage/meta/experiments/k",
        strict,
      ),
    ).not.toThrow();
    expect(() => checkFilePath("config.database.endpoint", "/tmp/db", "/tmp/db/meta/experiments/k", strict)).toThrow(
      /config\.database\.endpoint.*outside/,
    );
    expect(() => checkFilePath("config.database.endpoint", "x", "relative/path", strict)).toThrow(/absolute/);
  });
});

describe("host names resolved (resolve-host.ts)", () => {
  const table: Record<string, string[]> = {
    "files.example": ["93.184.216.34"],
    "inside.example": ["93.184.216.34", "10.0.0.7"],
    "meta.example": ["169.254.169.254"],
    "v6.example": ["fd00::5"],
  };
  const resolver: Resolver = async (host) => {
    const list = table[host];
    if (!list) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: "ENOTFOUND" });
    return list.map((address) => ({ address, family: address.includes(":") ? 6 : 4 }));
  };

  test("every address a name resolves to is checked", async () => {
    expect(await resolveChecked("f", "http://files.example/x", "files.example", strict, { resolver })).toEqual([
      { address: "93.184.216.34", family: 4 },
    ]);
    await expect(
      resolveChecked("f", "http://inside.example/x", "inside.example", strict, { resolver }),
    ).rejects.toThrow(/resolves to 10\.0\.0\.7.*--allow-private-endpoints/);
    await expect(resolveChecked("f", "http://v6.example/x", "v6.example", strict, { resolver })).rejects.toThrow(
      /fd00::5/,
    );
    expect(
      (await resolveChecked("f", "http://inside.example/x", "inside.example", privateOk, { resolver })).length,
    ).toBe(2);
    await expect(resolveChecked("f", "http://meta.example/x", "meta.example", privateOk, { resolver })).rejects.toThrow(
      /metadata/,
    );
  });

  test("a name that does not resolve now is retryable (not a pass)", async () => {
    const err = await resolveChecked("f", "http://nowhere.example/x", "nowhere.example", strict, { resolver }).catch(
      (e) => e,
    );
    expect(err).toBeInstanceOf(RetryableError);
  });

  test("checkLocationResolved: s3 hosts, http(s) hosts; buckets and gs:// are not resolved", async () => {
    await expect(
      checkLocationResolved("q", "s3://inside.example/b/k", strict, {}, { resolver }),
    ).resolves.toBeUndefined(); // "inside.example" is a bucket name, not a host
    await expect(
      checkLocationResolved(
        "q",
        "s3://s3.inside.example:9000/b/k",
        strict,
        {},
        { resolver: async () => [{ address: "10.1.1.1", family: 4 }] },
      ),
    ).rejects.toThrow(/10\.1\.1\.1/);
    await expect(checkLocationResolved("q", "https://meta.example/x", privateOk, {}, { resolver })).rejects.toThrow(
      /metadata/,
    );
    await expect(checkLocationResolved("q", "gs://bucket-name/k", strict, {}, { resolver })).resolves.toBeUndefined();
    expect(connectHostOf("http://a.example:8080/x")).toBe("a.example");
    expect(connectHostOf("s3://minio.s3.example.org:9000/b/k")).toBe("minio.s3.example.org");
    expect(connectHostOf("s3://bucket/key")).toBeUndefined();
    expect(connectHostOf("minio:9000")).toBe("minio");
  });
});
