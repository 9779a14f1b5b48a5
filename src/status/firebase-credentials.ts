// Which credentials the Firebase record uses: the database config's own serviceAccount file, the
// --google-certs file of the database's project, GOOGLE_APPLICATION_CREDENTIALS, or none when
// FIREBASE_DATABASE_EMULATOR_HOST points at an emulator (firebase-admin then sends no token).

import { existsSync } from "node:fs";
import { serviceAccountFiles, type ServiceAccountFile } from "../config/google-certs.ts";

export type FirebaseCredentialChoice =
  | { kind: "emulator"; host: string }
  | { kind: "service-account"; file: string; origin: string }
  | { kind: "application-default"; origin: string };

/** The choice, or a reason why there is no usable credential. */
export function chooseFirebaseCredentials(
  db: Record<string, unknown>,
  projectId: string | undefined,
  env: Record<string, string | undefined>,
  googleCertsDir: string | undefined,
): FirebaseCredentialChoice | { kind: "none"; reason: string } {
  const emulator = env.FIREBASE_DATABASE_EMULATOR_HOST;
  if (emulator) return { kind: "emulator", host: emulator };
  const own = typeof db.serviceAccount === "string" ? db.serviceAccount : undefined;
  if (own && existsSync(own)) return { kind: "service-account", file: own, origin: "config.database.serviceAccount" };
  if (googleCertsDir && projectId) {
    let files: ServiceAccountFile[] = [];
    try {
      files = serviceAccountFiles(googleCertsDir);
    } catch {
      files = [];
    }
    const match = files.find((f) => f.projectId === projectId);
    if (match) return { kind: "service-account", file: match.path, origin: `--google-certs (${match.path})` };
  }
  if (env.GOOGLE_APPLICATION_CREDENTIALS)
    return { kind: "application-default", origin: "GOOGLE_APPLICATION_CREDENTIALS" };
  const where = own ? `config.database.serviceAccount ${JSON.stringify(own)} does not exist on this machine, ` : "";
  return {
    kind: "none",
    reason:
      `${where}no service-account file for project ${JSON.stringify(projectId ?? "?")} ` +
      "in --google-certs and no GOOGLE_APPLICATION_CREDENTIALS",
  };
}
