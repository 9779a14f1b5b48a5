// `studio-runner version [--json]`: the version, commit, build date and target of this binary.

import { defineCommand } from "citty";
import { BUILD_DATE, COMMIT, TARGET, VERSION } from "../version.ts";

export const versionCommand = defineCommand({
  meta: { name: "version", description: "Print the version (--json: version, commit, build date, target, bun)" },
  args: { json: { type: "boolean", description: "One JSON object, for scripts and inventories", default: false } },
  run({ args }) {
    if (args.json) {
      const info = { version: VERSION, commit: COMMIT, buildDate: BUILD_DATE, target: TARGET, bun: Bun.version };
      process.stdout.write(`${JSON.stringify(info)}\n`);
      return;
    }
    process.stdout.write(
      `studio-runner ${VERSION} (commit ${COMMIT}, built ${BUILD_DATE}, ${TARGET}, bun ${Bun.version})\n`,
    );
  },
});
