// The bearer token that POST /drain, /drain?exit=true and /resume require: read once at start from
// --admin-token-file (a file only its owner can read, or its group where Kubernetes' fsGroup makes
// it so), compared in constant time, never logged.

import { createHash, timingSafeEqual } from "node:crypto";
import { readFileSync, statSync } from "node:fs";

/** Shorter tokens could be guessed over the network; `openssl rand -hex 32` gives 64 characters. */
export const MIN_TOKEN_CHARS = 16;
/** A token file is a line, not a document. */
const MAX_TOKEN_FILE_BYTES = 4_096;

/** --admin-token-file names a file the runner will not take its token from. */
export class AdminTokenError extends Error {
  constructor(
    readonly path: string,
    detail: string,
  ) {
    super(`--admin-token-file ${path}: ${detail}`);
    this.name = "AdminTokenError";
  }
}

export type AdminToken = {
  /** The file it came from (the value itself is never exposed). */
  readonly path: string;
  /** Whether an `Authorization` header value carries this token (constant time in its content). */
  matches(authorization: string | null): boolean;
};

const digest = (text: string) => createHash("sha256").update(text, "utf8").digest();

/**
 * Reads and checks the token file. Refused: a file that cannot be read, is not a regular file, is
 * empty or too short, holds more than one line or non-visible characters, or that others (not the
 * owner, not its group) may read or write, or its group may write. A group-readable file is taken
 * with a warning (Kubernetes makes secret files 0440 when the pod sets fsGroup).
 */
export function readAdminToken(path: string, warn: (message: string) => void): AdminToken {
  let mode: number;
  let text: string;
  try {
    const st = statSync(path);
    if (!st.isFile()) throw new AdminTokenError(path, "not a regular file");
    if (st.size > MAX_TOKEN_FILE_BYTES)
      throw new AdminTokenError(path, `larger than ${MAX_TOKEN_FILE_BYTES} bytes: a token file holds one line`);
    mode = st.mode & 0o777;
    text = readFileSync(path, "utf8");
  } catch (err) {
    if (err instanceof AdminTokenError) throw err;
    throw new AdminTokenError(
      path,
      `cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
    );
  }
  if (mode & 0o007)
    throw new AdminTokenError(
      path,
      `mode ${mode.toString(8).padStart(4, "0")} lets other users read or change it: chmod 600 it`,
    );
  if (mode & 0o020)
    throw new AdminTokenError(path, `mode ${mode.toString(8).padStart(4, "0")} lets its group change it: chmod 600 it`);
  if (mode & 0o040)
    warn(
      `--admin-token-file ${path}: readable by its group (mode ${mode.toString(8).padStart(4, "0")}); ` +
        "chmod 600 it unless the group is the runner's own (Kubernetes fsGroup)",
    );
  const token = text.trim();
  if (!token) throw new AdminTokenError(path, "empty");
  if (/[\r\n]/.test(token)) throw new AdminTokenError(path, "holds more than one line");
  if (!/^[\x21-\x7e]+$/.test(token))
    throw new AdminTokenError(
      path,
      "holds spaces or characters that are not visible ASCII (a bearer token is one word)",
    );
  if (token.length < MIN_TOKEN_CHARS)
    throw new AdminTokenError(path, `shorter than ${MIN_TOKEN_CHARS} characters (make one with: openssl rand -hex 32)`);
  return adminToken(path, token);
}

/** A token held in memory (tests, and readAdminToken's result). */
export function adminToken(path: string, token: string): AdminToken {
  const want = digest(token);
  return {
    path,
    matches(authorization) {
      const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization ?? "");
      // Digests of equal length: the comparison takes the same time whatever the offered token is.
      const offered = digest(m?.[1] ?? "");
      return timingSafeEqual(offered, want) && m !== null;
    },
  };
}
