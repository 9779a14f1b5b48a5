// What tests of the AWS SDK's default credential chain need: a stand-in for AWS STS on loopback, the
// credential a SigV4 request was signed with (read from its Authorization header), and a child
// environment with no AWS setting of this machine in it (the chain reads process.env and ~/.aws).
//
// The STS stand-in: AWS STS has no emulator on this machine (fauxqs, moto's server here do not serve
// it), so this is a wire-level stand-in for the one call web identity makes,
// AssumeRoleWithWebIdentity (awsQuery protocol: a form-encoded POST, an XML answer). It checks
// nothing but that the call is that one, records what it was sent, and answers with fixed
// temporary credentials.

import { NO_METADATA_ENV } from "./s3-server.ts";

export type StsCall = { action: string; roleArn: string; roleSessionName: string; webIdentityToken: string };

export type StsStandIn = {
  endpoint: string;
  calls: StsCall[];
  issued: { accessKeyId: string; secretAccessKey: string; sessionToken: string };
  stop(): Promise<void>;
};

const xmlText = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

export function startStsStandIn(issued: StsStandIn["issued"]): StsStandIn {
  const calls: StsCall[] = [];
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const form = new URLSearchParams(req.method === "POST" ? await req.text() : new URL(req.url).search);
      const call = {
        action: form.get("Action") ?? "",
        roleArn: form.get("RoleArn") ?? "",
        roleSessionName: form.get("RoleSessionName") ?? "",
        webIdentityToken: form.get("WebIdentityToken") ?? "",
      };
      calls.push(call);
      if (call.action !== "AssumeRoleWithWebIdentity") {
        const error =
          '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>' +
          `<Code>InvalidAction</Code><Message>not served here: ${xmlText(call.action)}</Message></Error>` +
          "<RequestId>standin</RequestId></ErrorResponse>";
        return new Response(error, { status: 400, headers: { "content-type": "text/xml" } });
      }
      const expiration = new Date(Date.now() + 60 * 60 * 1000).toISOString();
      const xml =
        '<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">' +
        "<AssumeRoleWithWebIdentityResult>" +
        "<SubjectFromWebIdentityToken>system:serviceaccount:studio:runner</SubjectFromWebIdentityToken>" +
        "<Audience>sts.amazonaws.com</Audience>" +
        "<AssumedRoleUser>" +
        `<Arn>arn:aws:sts::123456789012:assumed-role/studio-runner/${xmlText(call.roleSessionName)}</Arn>` +
        `<AssumedRoleId>AROAEXAMPLEROLEID:${xmlText(call.roleSessionName)}</AssumedRoleId>` +
        "</AssumedRoleUser>" +
        "<Credentials>" +
        `<SessionToken>${xmlText(issued.sessionToken)}</SessionToken>` +
        `<SecretAccessKey>${xmlText(issued.secretAccessKey)}</SecretAccessKey>` +
        `<Expiration>${expiration}</Expiration>` +
        `<AccessKeyId>${xmlText(issued.accessKeyId)}</AccessKeyId>` +
        "</Credentials>" +
        "<Provider>oidc.eks.example</Provider>" +
        "</AssumeRoleWithWebIdentityResult>" +
        "<ResponseMetadata><RequestId>standin-1</RequestId></ResponseMetadata>" +
        "</AssumeRoleWithWebIdentityResponse>";
      return new Response(xml, { status: 200, headers: { "content-type": "text/xml" } });
    },
  });
  return {
    endpoint: `http://127.0.0.1:${server.port}`,
    calls,
    issued,
    stop: async () => void server.stop(true),
  };
}

/** The access key id, region and service a SigV4 request was signed for, or undefined when unsigned. */
export function signedCredential(
  headers: Headers,
): { accessKeyId: string; region: string; service: string; securityToken?: string } | undefined {
  const m = /Credential=([^/,\s]+)\/\d{8}\/([^/]+)\/([^/]+)\/aws4_request/.exec(headers.get("authorization") ?? "");
  if (!m) return undefined;
  const token = headers.get("x-amz-security-token") ?? undefined;
  return { accessKeyId: m[1]!, region: m[2]!, service: m[3]!, ...(token ? { securityToken: token } : {}) };
}

/**
 * This process's environment without any AWS_* setting of its own (each is blanked, so the result
 * also works as overrides merged onto process.env; nor HOME's ~/.aws: the shared files point at
 * paths that do not exist unless `extra` names them), metadata probes off, plus `extra`.
 */
export function chainEnv(missingDir: string, extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = k.startsWith("AWS_") ? "" : v;
  // Kept: the CA bundle is not a credential, and TLS to real AWS is never made here anyway.
  if (process.env.AWS_CA_BUNDLE) env.AWS_CA_BUNDLE = process.env.AWS_CA_BUNDLE;
  return {
    ...env,
    ...NO_METADATA_ENV,
    AWS_SHARED_CREDENTIALS_FILE: `${missingDir}/no-credentials`,
    AWS_CONFIG_FILE: `${missingDir}/no-config`,
    ...extra,
  };
}
