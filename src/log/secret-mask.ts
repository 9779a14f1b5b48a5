// Hides secrets in log lines: credentials in URLs, NAME=value where NAME looks secret, tokens of
// well-known shapes, and any literal secret value the runner knows about. looksSecret and
// valueLooksSecret are also what the job environment uses to withhold the runner's variables.

const SECRET_NAME = /(KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|CONNECTION_?STRING|_DSN$|^DSN$)/i;

/** Names that say their value is a secret: …KEY…, …SECRET…, …TOKEN…, …PASSWORD…, …CONNECTION_STRING,
 * …_DSN (substring match, case-insensitive). */
export const looksSecret = (name: string) => SECRET_NAME.test(name);

/**
 * Token formats that are secret whatever the variable is called: GitHub (ghp_, gho_, ghu_, ghs_,
 * ghr_, github_pat_), GitLab (glpat-), Hugging Face (hf_), npm (npm_), Slack (xox?-), OpenAI-style
 * (sk-), AWS access key ids (AKIA…/ASIA…), and PEM private keys.
 */
const SECRET_TOKEN = new RegExp(
  String.raw`\b(gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}|glpat-[A-Za-z0-9_-]{20,}|hf_[A-Za-z0-9]{30,}|` +
    String.raw`npm_[A-Za-z0-9]{30,}|xox[abprs]-[A-Za-z0-9-]{10,}|sk-[A-Za-z0-9_-]{32,}|(?:AKIA|ASIA)[0-9A-Z]{16})\b`,
  "g",
);
const PRIVATE_KEY = /-----BEGIN [A-Z ]*PRIVATE KEY-----/;
/** A URL with user information (scheme://user:password@ or scheme://token@). */
const URL_CREDENTIALS = /[a-z][a-z0-9+.-]*:\/\/[^/\s@]+@/i;
/** Signed URLs (Azure SAS, S3/GCS presigned, OAuth access tokens in a query). */
const SIGNED_URL = /[?&](sig|signature|x-amz-signature|x-goog-signature|x-amz-security-token|access_token|token)=/i;
/** Connection strings: Azure's AccountKey=/SharedAccessKey=, ODBC/ADO Password=/Pwd=. */
const CONNECTION_STRING_SECRET = /(^|;)\s*(AccountKey|SharedAccessKey|SharedAccessSignature|Password|Pwd)\s*=/i;

/** Whether a value carries a credential by its shape, whatever its variable is called. */
export function valueLooksSecret(value: string): boolean {
  SECRET_TOKEN.lastIndex = 0;
  return (
    URL_CREDENTIALS.test(value) ||
    SIGNED_URL.test(value) ||
    CONNECTION_STRING_SECRET.test(value) ||
    PRIVATE_KEY.test(value) ||
    SECRET_TOKEN.test(value)
  );
}

export class SecretMasker {
  private readonly values: string[];

  constructor(secretValues: Iterable<string> = []) {
    // Longest first so a secret containing another is masked whole; short values would mask noise.
    this.values = [...new Set([...secretValues].filter((v) => v && v.length >= 6))].sort((a, b) => b.length - a.length);
  }

  mask(line: string): string {
    let out = line;
    for (const v of this.values) if (out.includes(v)) out = out.split(v).join("***");
    out = out.replace(SECRET_TOKEN, "***");
    // scheme://user:password@host and scheme://token@host (git URLs)
    if (out.includes("://")) out = out.replace(/\b([a-z][a-z0-9+.-]*:\/\/)[^\s/@:]+(:[^\s/@]*)?@/gi, "$1***@");
    // NAME=value for secret-looking names (not "pkg==1.0" requirement pins, nor "a<=b")
    if (!out.includes("=")) return out;
    out = out.replace(
      /(?<![=<>!~])\b([A-Za-z_][A-Za-z0-9_]*)(\s*=(?!=)\s*)("[^"]*"|'[^']*'|[^\s,;]+)/g,
      (all, name: string, sep: string) => (SECRET_NAME.test(name) ? `${name}${sep}***` : all),
    );
    return out;
  }
}
