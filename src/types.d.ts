// Type declarations for dependencies that ship none.
declare module "unbzip2-stream" {
  import type { Duplex } from "node:stream";
  function unbzip2(): Duplex;
  export default unbzip2;
}
declare const STUDIO_RUNNER_VERSION: string;
declare const STUDIO_RUNNER_COMMIT: string;
declare const STUDIO_RUNNER_BUILD_DATE: string;
declare const STUDIO_RUNNER_TARGET: string;
/** Files imported `with { type: "text" }` (embedded in the binary). */
declare module "*.py" {
  const text: string;
  export default text;
}
