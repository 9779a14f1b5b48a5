// Hides secrets in log lines: credentials in URLs, NAME=value where NAME looks secret, and any
// literal secret value the runner knows about.

const SECRET_NAME = /(KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL)/i;

export const looksSecret = (name: string) => SECRET_NAME.test(name);

export class SecretMasker {
  private readonly values: string[];

  constructor(secretValues: Iterable<string> = []) {
    // Longest first so a secret containing another is masked whole; short values would mask noise.
    this.values = [...new Set([...secretValues].filter((v) => v && v.length >= 6))].sort((a, b) => b.length - a.length);
  }

  mask(line: string): string {
    let out = line;
    for (const v of this.values) if (out.includes(v)) out = out.split(v).join("***");
    // scheme://user:password@host and scheme://token@host (git URLs)
    if (out.includes("://")) out = out.replace(/\b([a-z][a-z0-9+.-]*:\/\/)[^\s/@:]+(:[^\s/@]*)?@/gi, "$1***@");
    // NAME=value for secret-looking names (not "pkg==1.0" requirement pins, nor "a<=b")
    if (!out.includes("=")) return out;
    out = out.replace(/(?<![=<>!~])\b([A-Za-z_][A-Za-z0-9_]*)(\s*=(?!=)\s*)("[^"]*"|'[^']*'|[^\s,;]+)/g, (all, name: string, sep: string) =>
      SECRET_NAME.test(name) ? `${name}${sep}***` : all,
    );
    return out;
  }
}
