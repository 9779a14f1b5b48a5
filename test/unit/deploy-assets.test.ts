// The install assets, checked by tools that know their schemas: the systemd unit by
// `systemd-analyze verify` (unknown keys and unparsable values count as failures), install.sh by
// `bash -n` and two runs into a DESTDIR, and deploy/k8s by the Kubernetes API schemas
// (test/helpers/k8s-schema.ts). Each check is also shown to catch a broken copy.

import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import { loadSettings } from "../../src/config/load.ts";
import { parseDurationMs } from "../../src/config/units.ts";
import { RUN_OPTIONS } from "../../src/config/options.ts";
import { DEFAULT_DRAIN_CONFIGMAP, K8S_OPTIONS } from "../../src/k8s/settings.ts";
import { PUBSUB_OPTIONS } from "../../src/queue/pubsub/settings.ts";
import { SQS_OPTIONS } from "../../src/queue/sqs/settings.ts";
import { ENVELOPE_OPTIONS } from "../../src/request/envelope/options.ts";
import { REPO } from "../helpers/e2e.ts";
import { manifestProblems } from "../helpers/k8s-schema.ts";

const DEPLOY = join(REPO, "deploy");
const UNIT = join(DEPLOY, "systemd", "studio-runner.service");
const K8S = join(DEPLOY, "k8s");
const SYSTEMD_ANALYZE = "/usr/bin/systemd-analyze";

const shutdownGraceDefaultMs = parseDurationMs(RUN_OPTIONS.find((o) => o.name === "shutdown-grace")!.default!)!;

/** A fake ExecStart binary, so that verify finds the command it checks for. */
function fakeBinary(dir: string): string {
  const path = join(dir, "studio-runner");
  writeFileSync(path, "#!/bin/sh\nexit 0\n");
  chmodSync(path, 0o755);
  return path;
}

/** systemd-analyze verify on a copy of the unit whose ExecStart names `binary`; its complaints. */
function verifyUnit(unitText: string, binary: string): { code: number | null; complaints: string[] } {
  const dir = mkdtempSync(join(tmpdir(), "unit-"));
  const path = join(dir, "studio-runner.service");
  writeFileSync(path, unitText.replace(/^ExecStart=\S+/m, `ExecStart=${binary}`));
  const r = spawnSync(SYSTEMD_ANALYZE, ["verify", "--man=no", path], { encoding: "utf8" });
  // Unknown keys and bad values are only warnings to systemd: every line naming the unit counts.
  const complaints = `${r.stdout}\n${r.stderr}`.split("\n").filter((l) => l.includes("studio-runner.service"));
  return { code: r.status, complaints };
}

const unitValue = (text: string, key: string) => new RegExp(`^${key}=(.*)$`, "m").exec(text)?.[1]?.trim();

describe("systemd unit", () => {
  const haveAnalyze = existsSync(SYSTEMD_ANALYZE);
  if (!haveAnalyze && process.env.CI === "true")
    throw new Error("systemd-analyze is missing: it is required under CI (apt-get install systemd)");

  test.skipIf(!haveAnalyze)("systemd-analyze verify accepts it without a single complaint", () => {
    const r = verifyUnit(readFileSync(UNIT, "utf8"), fakeBinary(mkdtempSync(join(tmpdir(), "bin-"))));
    expect(r.complaints).toEqual([]);
    expect(r.code).toBe(0);
  });

  test.skipIf(!haveAnalyze)("the check catches an unknown key, a bad value and a missing binary", () => {
    const bin = fakeBinary(mkdtempSync(join(tmpdir(), "bin-")));
    const text = readFileSync(UNIT, "utf8");
    expect(
      verifyUnit(
        text.replace("ProtectSystem=strict", "ProtectSystem=strict\nProtectSystm=strict"),
        bin,
      ).complaints.join("\n"),
    ).toContain("Unknown key");
    expect(
      verifyUnit(text.replace("ProtectSystem=strict", "ProtectSystem=sometimes"), bin).complaints.join("\n"),
    ).toContain("Failed to parse protect system value");
    expect(verifyUnit(text, "/nonexistent/studio-runner").code).not.toBe(0);
  });

  test("drains on stop: SIGTERM to the runner only, with time for the grace period and uploads", () => {
    const text = readFileSync(UNIT, "utf8");
    expect(unitValue(text, "KillSignal")).toBe("SIGTERM");
    expect(unitValue(text, "KillMode")).toBe("mixed");
    const stopMs = parseDurationMs(unitValue(text, "TimeoutStopSec")!.replace(/min$/, "m"))!;
    expect(stopMs).toBeGreaterThan(shutdownGraceDefaultMs);
    expect(unitValue(text, "Delegate")).toBe("yes");
    for (const [key, value] of [
      ["NoNewPrivileges", "yes"],
      ["ProtectSystem", "strict"],
      ["ProtectHome", "yes"],
      ["PrivateTmp", "yes"],
    ])
      expect(unitValue(text, key!)).toBe(value!);
    // Options that would break GPUs, cgroups or the bwrap sandbox stay out.
    for (const key of [
      "PrivateDevices",
      "ProtectControlGroups",
      "RestrictNamespaces",
      "PrivateUsers",
      "MemoryDenyWriteExecute",
    ])
      expect(unitValue(text, key)).toBeUndefined();
    expect(unitValue(text, "ExecStart")).toBe(
      "/usr/local/bin/studio-runner run --config /etc/studio-runner/config.yaml",
    );
  });
});

describe("install.sh", () => {
  const script = join(DEPLOY, "install.sh");

  test("bash -n", () => {
    const r = spawnSync("bash", ["-n", script], { encoding: "utf8" });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
  });

  test("installs into a DESTDIR, twice, keeping the admin's config; the installed unit verifies", () => {
    const dest = mkdtempSync(join(tmpdir(), "destdir-"));
    const bin = fakeBinary(mkdtempSync(join(tmpdir(), "bin-")));
    const run = () =>
      spawnSync("bash", [script, "--binary", bin, "--prefix", "/opt/studio"], {
        encoding: "utf8",
        env: { ...process.env, DESTDIR: dest },
      });
    const first = run();
    expect(first.stderr).toBe("");
    expect(first.status).toBe(0);
    const installed = join(dest, "opt/studio/bin/studio-runner");
    expect(statSync(installed).mode & 0o777).toBe(0o755);
    expect(statSync(join(dest, "etc/studio-runner/env")).mode & 0o777).toBe(0o600);
    expect(existsSync(join(dest, "etc/studio-runner/config.yaml"))).toBe(true);
    const unit = readFileSync(join(dest, "etc/systemd/system/studio-runner.service"), "utf8");
    expect(unitValue(unit, "ExecStart")).toBe(
      "/opt/studio/bin/studio-runner run --config /etc/studio-runner/config.yaml",
    );
    writeFileSync(join(dest, "etc/studio-runner/config.yaml"), "queue-match: ^rmq_mine$\n");
    const second = run();
    expect(second.status).toBe(0);
    expect(second.stdout).not.toContain("created /etc/studio-runner/config.yaml");
    expect(readFileSync(join(dest, "etc/studio-runner/config.yaml"), "utf8")).toBe("queue-match: ^rmq_mine$\n");
    expect(readdirSync(join(dest, "opt/studio/bin"))).toEqual(["studio-runner"]); // no temporary left
    if (existsSync(SYSTEMD_ANALYZE)) expect(verifyUnit(unit, installed).complaints).toEqual([]);
  });

  test("refuses without a binary, and unknown arguments", () => {
    const dest = mkdtempSync(join(tmpdir(), "destdir-"));
    const env = { ...process.env, DESTDIR: dest };
    expect(spawnSync("bash", [script, "--binary", "/nonexistent"], { encoding: "utf8", env }).status).toBe(1);
    expect(spawnSync("bash", [script, "--frobnicate"], { encoding: "utf8", env }).status).toBe(2);
  });
});

describe("example configuration", () => {
  test("deploy/config.example.yaml holds only settings the run command knows, with valid values", () => {
    const specs = [...RUN_OPTIONS, ...SQS_OPTIONS, ...PUBSUB_OPTIONS, ...ENVELOPE_OPTIONS, ...K8S_OPTIONS];
    const settings = loadSettings(specs, { config: join(DEPLOY, "config.example.yaml") }, {});
    expect(settings["working-dir"]).toBe("/var/lib/studio-runner/work");
    expect(settings["shutdown-grace"]).toBe(shutdownGraceDefaultMs);
  });
});

describe("Kubernetes manifests", () => {
  const files = readdirSync(K8S).filter((f) => f.endsWith(".yaml") && f !== "kustomization.yaml");
  const docs = files.flatMap((f) =>
    parseAllDocuments(readFileSync(join(K8S, f), "utf8")).map((d) => ({
      file: f,
      doc: d.toJSON() as Record<string, any>,
    })),
  );
  const byKind = (kind: string) => docs.filter((d) => d.doc.kind === kind).map((d) => d.doc);

  test("every object is valid against the Kubernetes API schema of its kind (types, required fields, no unknown fields)", () => {
    expect(docs.length).toBeGreaterThanOrEqual(8);
    for (const { file, doc } of docs) expect({ file, problems: manifestProblems(doc) }).toEqual({ file, problems: [] });
  });

  test("the check catches a misspelt field, a wrong type and a missing required field", () => {
    const deployment = structuredClone(byKind("Deployment")[0]!);
    deployment.spec.template.spec.containers[0].livenessProbe.httpGet.paht = "/healthz";
    expect(manifestProblems(deployment).join("\n")).toContain(
      "unknown field spec.template.spec.containers[0].livenessProbe.httpGet.paht",
    );
    const wrongType = structuredClone(byKind("Deployment")[0]!);
    wrongType.spec.template.spec.terminationGracePeriodSeconds = "900";
    expect(manifestProblems(wrongType).join("\n")).toContain("terminationGracePeriodSeconds must be integer");
    const role = structuredClone(byKind("Role")[0]!);
    delete role.rules[0].verbs;
    expect(manifestProblems(role).join("\n")).toContain("verbs");
    const policy = structuredClone(byKind("NetworkPolicy")[0]!);
    policy.spec.ingress[0].form = policy.spec.ingress[0].from;
    expect(manifestProblems(policy).join("\n")).toContain("unknown field spec.ingress[0].form");
    const badPolicy = structuredClone(byKind("NetworkPolicy")[0]!);
    badPolicy.spec.policyTypes = "Ingress";
    expect(manifestProblems(badPolicy).join("\n")).toContain("policyTypes must be array");
  });

  test("the NetworkPolicy admits only Prometheus, only to the metrics port, of the runner's pods; the admin token is a mounted Secret", () => {
    const deployment = byKind("Deployment")[0]!;
    const pod = deployment.spec.template.spec;
    const container = pod.containers[0];
    const policy = byKind("NetworkPolicy")[0]!;
    expect(policy.spec.podSelector.matchLabels).toEqual(deployment.spec.template.metadata.labels);
    expect(policy.spec.policyTypes).toEqual(["Ingress"]);
    // Every rule names who (no rule without "from" admits everyone) and only the metrics port.
    expect(policy.spec.ingress).toHaveLength(1);
    for (const rule of policy.spec.ingress) {
      expect(rule.from?.length).toBeGreaterThan(0);
      for (const peer of rule.from)
        expect(
          peer.ipBlock === undefined && peer.namespaceSelector?.matchLabels && peer.podSelector?.matchLabels,
        ).toBeTruthy();
      expect(rule.ports).toEqual([{ port: "metrics", protocol: "TCP" }]);
    }
    expect(policy.spec.ingress[0].from[0].podSelector.matchLabels).toEqual({ "app.kubernetes.io/name": "prometheus" });
    expect(container.ports.find((p: any) => p.name === "metrics").containerPort).toBe(9090);
    // The token: a Secret key mounted as the file --admin-token-file names, owner-readable only.
    const args: string[] = container.args;
    const tokenFile = args.find((a) => a.startsWith("--admin-token-file="))!.split("=", 2)[1]!;
    const mount = container.volumeMounts.find((m: any) => tokenFile.startsWith(`${m.mountPath}/`));
    expect(mount.readOnly).toBe(true);
    const volume = pod.volumes.find((v: any) => v.name === mount.name);
    // kubectl reads YAML 1.1, where 0400 is octal (the YAML 1.2 parser above reads it as 400).
    const asKubectlReads = parseAllDocuments(readFileSync(join(K8S, "deployment.yaml"), "utf8"), {
      version: "1.1",
    })[0]!.toJSON();
    expect(asKubectlReads.spec.template.spec.volumes.find((v: any) => v.name === mount.name).secret.defaultMode).toBe(
      0o400,
    );
    expect(volume.secret.items.map((i: any) => `${mount.mountPath}/${i.path}`)).toEqual([tokenFile]);
    const secret = byKind("Secret").find((x) => x.metadata.name === volume.secret.secretName)!;
    expect(Object.keys(secret.stringData)).toEqual([volume.secret.items[0].key]);
    // The placeholder is one the runner refuses, so an unedited manifest does not run with a known token.
    expect(secret.stringData.token.length).toBeLessThan(16);
  });

  test("kustomization lists every manifest", () => {
    const k = parseAllDocuments(readFileSync(join(K8S, "kustomization.yaml"), "utf8"))[0]!.toJSON();
    expect(k.kind).toBe("Kustomization");
    expect([...k.resources].sort()).toEqual([...files].sort());
  });

  test("the pieces agree: ConfigMap name, RBAC, flags, probes, grace, secret layouts", () => {
    const deployment = byKind("Deployment")[0]!;
    const pod = deployment.spec.template.spec;
    const container = pod.containers[0];
    const args: string[] = container.args;
    expect(args[0]).toBe("run");
    const flags = new Map(args.slice(1).map((a) => a.replace(/^--/, "").split("=", 2) as [string, string]));
    const known = new Set<string>(
      [...RUN_OPTIONS, ...SQS_OPTIONS, ...PUBSUB_OPTIONS, ...ENVELOPE_OPTIONS, ...K8S_OPTIONS].map((o) => o.name),
    );
    for (const name of flags.keys())
      expect({ flag: name, known: known.has(name) }).toEqual({ flag: name, known: true });
    // The drain map: created, readable by the runner's service account, and the one it follows.
    const map = byKind("ConfigMap")[0]!;
    expect(map.metadata.name).toBe(DEFAULT_DRAIN_CONFIGMAP);
    expect(flags.get("k8s-configmap")).toBe(map.metadata.name);
    expect(["Running", "DrainAndSuspend", "DrainAndTerminate"]).toContain(map.data.STATE);
    expect(() => new RegExp(map.data.QUEUE_MATCH)).not.toThrow();
    const role = byKind("Role")[0]!;
    expect(role.rules[0]).toEqual({
      apiGroups: [""],
      resources: ["configmaps"],
      resourceNames: [map.metadata.name],
      verbs: ["get", "list", "watch"],
    });
    const binding = byKind("RoleBinding")[0]!;
    expect(binding.roleRef.name).toBe(role.metadata.name);
    expect(binding.subjects[0].name).toBe(pod.serviceAccountName);
    expect(byKind("ServiceAccount")[0]!.metadata.name).toBe(pod.serviceAccountName);
    // Probes on the --prom-address port.
    const port = container.ports.find((p: any) => p.name === "metrics").containerPort;
    expect(flags.get("prom-address")).toBe(`:${port}`);
    expect(container.livenessProbe.httpGet).toEqual({ path: "/healthz", port: "metrics" });
    expect(container.readinessProbe.httpGet).toEqual({ path: "/readyz", port: "metrics" });
    // SIGTERM's grace fits in the pod's termination grace.
    expect(pod.terminationGracePeriodSeconds * 1000).toBeGreaterThan(parseDurationMs(flags.get("shutdown-grace")!)!);
    // GPUs.
    expect(container.resources.limits["nvidia.com/gpu"]).toBe(1);
    expect(pod.tolerations.some((t: any) => t.key === "nvidia.com/gpu")).toBe(true);
    // Secret layouts the runner reads: --sqs-certs <dir>/<account>/{credentials,config}; --encrypt-dir.
    const volume = (name: string) => pod.volumes.find((v: any) => v.name === name);
    const mount = (name: string) => container.volumeMounts.find((m: any) => m.name === name).mountPath;
    expect(flags.get("sqs-certs")).toBe(mount("aws"));
    expect(
      volume("aws")
        .secret.items.map((i: any) => i.path)
        .sort(),
    ).toEqual(["default/config", "default/credentials"]);
    expect(flags.get("encrypt-dir")).toBe(mount("encrypt"));
    expect(
      volume("encrypt")
        .secret.items.map((i: any) => i.path)
        .sort(),
    ).toEqual(["encryption/ssh-privatekey", "passphrase/ssh-passphrase"]);
    expect(flags.get("google-certs")).toBe(mount("google"));
    const secrets = new Map(byKind("Secret").map((s) => [s.metadata.name, s]));
    for (const v of pod.volumes.filter((v: any) => v.secret)) {
      const secret = secrets.get(v.secret.secretName);
      expect(secret).toBeDefined();
      for (const item of v.secret.items ?? []) expect(Object.keys(secret!.stringData)).toContain(item.key);
    }
    for (const from of container.envFrom) expect(secrets.has(from.secretRef.name)).toBe(true);
  });
});
