// Covers src/log/secret-mask.ts: SecretMasker hides NAME=value secrets, URL credentials and known secret values.
import { describe, expect, test } from "bun:test";
import { looksSecret, SecretMasker, valueLooksSecret } from "../../src/log/secret-mask.ts";

const masker = new SecretMasker();

describe("SecretMasker NAME=value", () => {
  test("AWS_SECRET_ACCESS_KEY=abc", () => {
    const out = masker.mask("export AWS_SECRET_ACCESS_KEY=abc");
    expect(out).toBe("export AWS_SECRET_ACCESS_KEY=***");
    expect(out).not.toContain("abc");
  });

  test("MY_TOKEN=xyz", () => {
    expect(masker.mask("MY_TOKEN=xyz")).toBe("MY_TOKEN=***");
  });

  test('PASSWORD="a b" (quoted value with a space is masked whole)', () => {
    const out = masker.mask('PASSWORD="a b" next=1');
    expect(out).toBe("PASSWORD=*** next=1");
    expect(out).not.toContain("a b");
  });

  test("single-quoted values, spaces around =, and several pairs on one line", () => {
    expect(masker.mask("db_password='p w'")).toBe("db_password=***");
    expect(masker.mask("API_KEY = s3cr3t")).toBe("API_KEY = ***");
    const out = masker.mask("user=bob PASSWD=hunter2, GOOGLE_CREDENTIALS=/x/y.json;mode=fast");
    expect(out).toBe("user=bob PASSWD=***, GOOGLE_CREDENTIALS=***;mode=fast");
  });

  test("secret-looking names match case-insensitively", () => {
    expect(masker.mask("api_key=abc123")).toBe("api_key=***");
    expect(masker.mask("Secret=abc123")).toBe("Secret=***");
  });

  test("requirement pins and comparisons with secret-looking project names are left alone", () => {
    for (const line of [
      "tokenizers==0.15.0",
      "keyring==24.3.0",
      "SecretStorage==3.3.3",
      "Collecting python-keystoneclient==5.0.0",
      "keyring<=25 tokenizers>=0.1 passlib~=1.7 tokenize-rt!=5.0",
      "ERROR: No matching distribution found for keyrings.alt==9.9",
    ]) {
      expect(masker.mask(line)).toBe(line);
    }
  });

  test("looksSecret", () => {
    for (const n of [
      "AWS_SECRET_ACCESS_KEY",
      "MY_TOKEN",
      "PASSWORD",
      "PASSWD",
      "GOOGLE_APPLICATION_CREDENTIALS",
      "api_key",
    ]) {
      expect(looksSecret(n)).toBe(true);
    }
    for (const n of ["PATH", "HOME", "loss", "lr", "step", "STUDIOML_EXPERIMENT"]) expect(looksSecret(n)).toBe(false);
  });
});

describe("SecretMasker URLs", () => {
  test("https://user:pass@github.com/x.git", () => {
    const out = masker.mask("git clone https://user:pass@github.com/x.git");
    expect(out).toBe("git clone https://***@github.com/x.git");
    expect(out).not.toContain("pass");
    expect(out).not.toContain("user");
  });

  test("https://token@host/x", () => {
    const out = masker.mask("fetching https://ghp_abcdef123456@host/x now");
    expect(out).toBe("fetching https://***@host/x now");
  });

  test("pip requirement git+https URLs and amqp URLs", () => {
    expect(masker.mask("-e git+https://deploy:tok3n@gitlab.example.com/g/p.git#egg=p")).toBe(
      "-e git+https://***@gitlab.example.com/g/p.git#egg=p",
    );
    expect(masker.mask("connecting to amqp://guest:guest@127.0.0.1:5672/%2f")).toBe(
      "connecting to amqp://***@127.0.0.1:5672/%2f",
    );
  });

  test("URLs without credentials are untouched", () => {
    const line = "GET https://github.com/x.git and http://127.0.0.1:9000/bucket/key";
    expect(masker.mask(line)).toBe(line);
  });

  test("an email address outside a URL is untouched", () => {
    expect(masker.mask("contact me@example.com")).toBe("contact me@example.com");
  });
});

describe("SecretMasker known values", () => {
  test("literal known secret values are masked anywhere in a line", () => {
    const m = new SecretMasker(["exampleSecretKey123", "sess-token-999"]);
    expect(m.mask("the key is exampleSecretKey123!")).toBe("the key is ***!");
    expect(m.mask("prefixexampleSecretKey123suffix")).toBe("prefix***suffix");
    expect(m.mask("a exampleSecretKey123 b exampleSecretKey123 c sess-token-999")).toBe("a *** b *** c ***");
    expect(m.mask('{"secret":"exampleSecretKey123"}')).not.toContain("exampleSecretKey123");
  });

  test("a secret containing another is masked whole", () => {
    const m = new SecretMasker(["abcdef", "abcdefghijkl"]);
    expect(m.mask("x abcdefghijkl y")).toBe("x *** y");
  });

  test("very short or empty values are not treated as secrets (they would mask noise)", () => {
    const m = new SecretMasker(["", "a", "12"]);
    expect(m.mask("a 12 abc")).toBe("a 12 abc");
  });

  test("ordinary metric lines are unchanged", () => {
    const m = new SecretMasker(["exampleSecretKey123"]);
    for (const line of [
      "loss=0.3 lr=0.1 step=5",
      "epoch 3/10 - accuracy: 0.91 - val_loss: 0.22",
      "keyboard interrupt ignored",
      "",
      "   ",
    ]) {
      expect(m.mask(line)).toBe(line);
    }
  });
});

describe("secret shapes (issue #14, hole 12)", () => {
  test("tokens of well-known formats are masked wherever they appear", () => {
    for (const token of [
      "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
      "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
      "glpat-abcdefghij0123456789",
      "hf_abcdefghijklmnopqrstuvwxyzABCDEFGH",
      "npm_abcdefghijklmnopqrstuvwxyz0123456789",
      "xoxb-1234567890-abcdefghij",
      "AKIAIOSFODNN7EXAMPLE",
    ]) {
      const out = masker.mask(`cloning with ${token} now`);
      expect(out).toBe("cloning with *** now");
    }
  });

  test("NAME=value for connection strings and DSNs", () => {
    expect(masker.mask("AZURE_STORAGE_CONNECTION_STRING=abc")).toBe("AZURE_STORAGE_CONNECTION_STRING=***");
    expect(masker.mask("SENTRY_DSN=https://k@o1/1")).not.toContain("k@o1");
    expect(looksSecret("MY_CONNECTION_STRING")).toBe(true);
    expect(looksSecret("SENTRY_DSN")).toBe(true);
  });

  test("valueLooksSecret: credentials by shape; ordinary values are not", () => {
    for (const v of [
      "postgres://u:p@db/x",
      "https://token@github.com/x.git",
      "https://a.blob.core.windows.net/c?sv=1&sig=abc",
      "https://b.s3.amazonaws.com/k?X-Amz-Signature=abc",
      "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=abc==",
      "Server=x;Password=abc;",
      "-----BEGIN OPENSSH PRIVATE KEY-----\nabc",
      "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    ]) {
      expect(valueLooksSecret(v)).toBe(true);
    }
    for (const v of [
      "/usr/bin:/bin",
      "https://example.org/data",
      "C.UTF-8",
      "0,1",
      "http://proxy:3128",
      "user@example.org",
    ])
      expect(valueLooksSecret(v)).toBe(false);
  });
});
