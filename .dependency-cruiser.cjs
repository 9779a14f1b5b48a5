// The import rules of src/ (issue #16), checked by `npm run check:deps` (dependency-cruiser) in CI:
// no import cycles, and no import from a lower layer to a higher one. Type-only imports count.
//
// Layers, low to high. A module may import the layers below its own, never a layer above it; the
// folders of one layer do not import each other (a folder that needs a peer belongs a layer
// higher). So no chain of imports between folders can come back to where it started, and
// no-circular keeps cycles out of each folder too.
const LAYERS = [
  // Plain building blocks: errors, options, files without following links, logging (src/retry/ once it exists).
  [
    "foundation",
    ["src/errors.ts", "src/version.ts", "src/types.d.ts", "src/config/", "src/fs/", "src/retry/", "src/log/"],
  ],
  // Mechanisms that know nothing about queues or requests: archives, processes, GPUs, containers.
  ["tools", ["src/archive/", "src/exec/", "src/gpu/", "src/container/"]],
  // Queue backends (and their report queues); the bubblewrap sandbox.
  ["queue", ["src/queue/", "src/sandbox/"]],
  // The studioml request: model, parsing, location policy, envelopes, admission.
  ["request", ["src/request/"]],
  // What requests are served with: storage, machine resources, Python environments.
  ["services", ["src/storage/", "src/resources/", "src/env/"]],
  // The event stream and its observers (metrics, /status, the status page).
  ["observe", ["src/observe/"]],
  // The experiment record and the reports to <queue>_response.
  ["status", ["src/status/"]],
  // One attempt.
  ["task", ["src/task/"]],
  // What runs attempts or sends requests: the daemon loop, Kubernetes, the submit client.
  ["daemon", ["src/runner/", "src/k8s/", "src/submit/"]],
  // `doctor`'s checks of a machine and its settings (they make backends and stores to reach them).
  ["doctor", ["src/doctor/"]],
  // The commands.
  ["cli", ["src/cli/"]],
  ["main", ["src/main.ts"]],
];

const escapeRegExp = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
const pathsOf = (layers) =>
  `^(${layers
    .flatMap(([, paths]) => paths)
    .map(escapeRegExp)
    .join("|")})`;

const upward = LAYERS.slice(0, -1).map(([name], i) => ({
  name: `no-upward-from-${name}`,
  comment: `${name} (${LAYERS[i][1].join(", ")}) may not import a higher layer: ${LAYERS.slice(i + 1)
    .map(([n]) => n)
    .join(", ")}`,
  severity: "error",
  from: { path: pathsOf([LAYERS[i]]) },
  to: { path: pathsOf(LAYERS.slice(i + 1)) },
}));

const folderPattern = (paths) =>
  `^src/(${paths
    .filter((p) => p.endsWith("/"))
    .map((p) => escapeRegExp(p.slice(4, -1)))
    .join("|")})/`;

const peers = LAYERS.filter(([, paths]) => paths.filter((p) => p.endsWith("/")).length > 1).map(([name, paths]) => ({
  name: `no-peer-import-in-${name}`,
  comment: `The folders of ${name} (${paths.filter((p) => p.endsWith("/")).join(", ")}) do not import each other.`,
  severity: "error",
  from: { path: folderPattern(paths) },
  to: { path: folderPattern(paths), pathNot: "^src/$1/" },
}));

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: "no-circular",
      comment: "Import cycles (type-only imports included) make the load order fragile and the layers meaningless.",
      severity: "error",
      from: {},
      to: { circular: true },
    },
    {
      name: "not-in-a-layer",
      comment: "Every module of src/ belongs to a layer: add a new folder to LAYERS in .dependency-cruiser.cjs.",
      severity: "error",
      from: { path: "^src/", pathNot: pathsOf(LAYERS) },
      to: {},
    },
    ...upward,
    ...peers,
  ],
  options: {
    includeOnly: "^src/",
    doNotFollow: { path: "node_modules" },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    enhancedResolveOptions: {
      exportsFields: ["exports"],
      conditionNames: ["import", "require", "node", "default", "types"],
    },
    reporterOptions: { text: { highlightFocused: true } },
  },
};
