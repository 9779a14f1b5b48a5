// Isolation between experimenters, from the compiled binary: each hole found when the runner was
// attacked (issue #14) is tried the way it was found and checked on the host — the file not
// written, the secret absent from storage, the process alive — never by the job's own report.
// One module per boundary under isolation/; they register their tests when imported.

import "./isolation/launchers.ts";
import "./isolation/environment-builds.ts";
import "./isolation/uploads.ts";
import "./isolation/locations.ts";
import "./isolation/credentials.ts";
import "./isolation/http-endpoint.ts";
import "./isolation/owner-files-envelopes.ts";
import "./isolation/limits.ts";
