// A bundler plugin that makes the heavy cloud SDKs load on first use instead of at start-up.
// Each listed package is replaced in the bundle by a stand-in whose exports are the package's
// own export names (read here, at build time); the real package is evaluated the first time
// one of them is used. A runner that serves only local or RabbitMQ queues with file: storage
// never evaluates the Google, AWS, Kubernetes or Prometheus clients: with every SDK evaluated,
// `studio-runner --version` took ~0.12 s and 87 MB; with them deferred, ~0.03 s and 49 MB.
// Packages that a module uses at its top level (e.g. `class X extends Sdk.Y`) simply load then.

import { createRequire } from "node:module";
import type { BunPlugin } from "bun";

/** Loaded on first use. Each entry is an import specifier exactly as the sources write it. */
export const LAZY_MODULES = [
  "@google-cloud/pubsub",
  "@google-cloud/storage",
  "firebase-admin/app",
  "firebase-admin/database",
  "@kubernetes/client-node",
  "prom-client",
  "@aws-sdk/client-s3",
  "@aws-sdk/client-sqs",
  "@aws-sdk/lib-storage",
  "@smithy/fetch-http-handler",
  "amqplib",
];

const NAMESPACE = "lazy-module";
/** Appended to the specifier the stand-in requires, so that one resolves to the real package. */
const REAL_SUFFIX = "?lazy-real";

/** The stand-in's source: a proxy that knows the export names and loads the package on access. */
function standIn(specifier: string, names: string[], esModule: boolean): string {
  return `
let real;
const load = () => (real ??= require(${JSON.stringify(specifier + REAL_SUFFIX)}));
const names = ${JSON.stringify(names)};
module.exports = new Proxy({}, {
  get(_t, k) { return k === "__esModule" ? ${esModule} : load()[k]; },
  has(_t, k) { return names.includes(k) || k in load(); },
  ownKeys() { return names; },
  getOwnPropertyDescriptor(_t, k) { return names.includes(k) ? { configurable: true, enumerable: true, get: () => load()[k] } : undefined; },
  getPrototypeOf() { return Object.prototype; },
});
`;
}

export function lazyModulesPlugin(fromDir: string, modules: string[] = LAZY_MODULES): BunPlugin {
  const req = createRequire(`${fromDir}/`);
  const exports = new Map<string, { names: string[]; esModule: boolean }>();
  for (const m of modules) {
    const mod = req(m) as Record<string, unknown>;
    exports.set(m, { names: Object.getOwnPropertyNames(mod), esModule: Boolean(mod.__esModule) });
  }
  const filter = new RegExp(`^(${modules.map((m) => m.replace(/[/.]/g, "\\$&")).join("|")})$`);
  return {
    name: "lazy-modules",
    setup(build) {
      // From the sources (and other packages): the stand-in. From the stand-in itself: the real package.
      build.onResolve({ filter }, (args) => ({ path: args.path, namespace: NAMESPACE }));
      build.onResolve({ filter: /\?lazy-real$/ }, (args) => ({
        path: req.resolve(args.path.slice(0, -REAL_SUFFIX.length)),
      }));
      build.onLoad({ filter: /.*/, namespace: NAMESPACE }, (args) => {
        const e = exports.get(args.path)!;
        return { loader: "js", contents: standIn(args.path, e.names, e.esModule) };
      });
    },
  };
}
