// Schema checks for Kubernetes manifests, offline: each object is validated against the
// Kubernetes OpenAPI schema of its kind (kubernetes-models: ajv validators generated from the
// API's OpenAPI, so types, enums, formats and required fields), and, because those schemas allow
// unknown properties, every field name is also checked against the API's own model of the kind
// (@kubernetes/client-node's generated classes), as `kubectl apply --validate=strict` would.

import * as k8s from "@kubernetes/client-node";
import { ConfigMap } from "kubernetes-models/v1/ConfigMap";
import { Secret } from "kubernetes-models/v1/Secret";
import { ServiceAccount } from "kubernetes-models/v1/ServiceAccount";
import { Deployment } from "kubernetes-models/apps/v1/Deployment";
import { NetworkPolicy } from "kubernetes-models/networking.k8s.io/v1/NetworkPolicy";
import { Role } from "kubernetes-models/rbac.authorization.k8s.io/v1/Role";
import { RoleBinding } from "kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding";

type Validating = { validate(): void };
type KindEntry = { model: new (data: any) => Validating; modelClass: string };

/** The kinds the project's manifests use, by "apiVersion/kind". */
const KINDS: Record<string, KindEntry> = {
  "v1/ConfigMap": { model: ConfigMap, modelClass: "V1ConfigMap" },
  "v1/Secret": { model: Secret, modelClass: "V1Secret" },
  "v1/ServiceAccount": { model: ServiceAccount, modelClass: "V1ServiceAccount" },
  "apps/v1/Deployment": { model: Deployment, modelClass: "V1Deployment" },
  "networking.k8s.io/v1/NetworkPolicy": { model: NetworkPolicy, modelClass: "V1NetworkPolicy" },
  "rbac.authorization.k8s.io/v1/Role": { model: Role, modelClass: "V1Role" },
  "rbac.authorization.k8s.io/v1/RoleBinding": { model: RoleBinding, modelClass: "V1RoleBinding" },
};

type Attribute = { baseName: string; type: string };

function attributesOf(className: string): Attribute[] | undefined {
  const cls = (k8s as unknown as Record<string, { attributeTypeMap?: Attribute[] }>)[className];
  return cls?.attributeTypeMap;
}

/** Field names the API does not know, as JSON paths. */
function unknownFields(value: unknown, type: string, path: string, out: string[]): void {
  if (value === null || value === undefined) return;
  const array = /^Array<(.+)>$/.exec(type);
  if (array) {
    if (Array.isArray(value))
      value.forEach((v, i) => {
        unknownFields(v, array[1]!, `${path}[${i}]`, out);
      });
    return;
  }
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (map) {
    if (typeof value === "object")
      for (const [k, v] of Object.entries(value)) unknownFields(v, map[1]!, `${path}.${k}`, out);
    return;
  }
  const attributes = attributesOf(type);
  if (!attributes || typeof value !== "object" || Array.isArray(value)) return; // primitives, IntOrString, any
  const known = new Map(attributes.map((a) => [a.baseName, a.type]));
  for (const [k, v] of Object.entries(value)) {
    const t = known.get(k);
    if (t === undefined) out.push(`${path}.${k}`);
    else unknownFields(v, t, `${path}.${k}`, out);
  }
}

/** Every problem with one manifest object (empty when it is valid). */
export function manifestProblems(doc: Record<string, unknown>): string[] {
  const id = `${doc.apiVersion}/${doc.kind}`;
  const entry = KINDS[id];
  if (!entry) return [`${id}: not a kind this check knows`];
  const problems: string[] = [];
  try {
    new entry.model(doc).validate();
  } catch (err) {
    problems.push(`${id} ${(doc.metadata as { name?: string } | undefined)?.name ?? "?"}: ${(err as Error).message}`);
  }
  const unknown: string[] = [];
  unknownFields(doc, entry.modelClass, "", unknown);
  for (const u of unknown) problems.push(`${id}: unknown field ${u.slice(1)}`);
  return problems;
}
