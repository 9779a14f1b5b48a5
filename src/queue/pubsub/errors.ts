// Typed faults of the Pub/Sub backend: unusable settings or credential files.

/** A --google-certs file, GOOGLE_APPLICATION_CREDENTIALS or --pubsub-project that cannot be used. */
export class PubsubSettingsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PubsubSettingsError";
  }
}
