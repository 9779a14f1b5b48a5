// `studio-runner version`: the version, commit and runtime of this binary.

import { defineCommand } from "citty";
import { COMMIT, VERSION } from "../version.ts";

export const versionCommand = defineCommand({
  meta: { name: "version", description: "Print the version" },
  run() {
    process.stdout.write(
      `studio-runner ${VERSION} (commit ${COMMIT}, bun ${Bun.version}, ${process.platform}-${process.arch})\n`,
    );
  },
});
