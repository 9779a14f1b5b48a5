// Step "fetch": every artifact into its folder (the workspace first), the container image when the
// request names one; mutable artifacts get a baseline so that untouched ones are not uploaded again.

import { formatBytes, formatDuration } from "../../config/units.ts";
import { CONTAINER_IMAGE_LABEL, isRegistryReference } from "../../container/apptainer.ts";
import { asFault } from "../../errors.ts";
import { fetchArtifact, fetchImageFile } from "../artifacts.ts";
import { need } from "../attempt-state.ts";
import type { AttemptStep } from "../attempt-step.ts";

const ALWAYS_FIRST = "workspace";

export const fetchStep: AttemptStep = {
  name: "fetch",
  async prepare(s) {
    const { request, ctx } = s;
    const dirs = need(s, "dirs");
    const log = need(s, "log");
    const uploader = need(s, "uploader");
    const access = need(s, "access");
    const events = ctx.events;
    const labels = Object.keys(request.experiment.artifacts).sort((a, b) =>
      a === ALWAYS_FIRST ? -1 : b === ALWAYS_FIRST ? 1 : 0,
    );
    const startedMs = s.clock.nowMs();
    let downloadedBytes = 0;
    for (const label of labels) {
      const artifact = request.experiment.artifacts[label]!;
      const phase = { phase: `fetch ${label}` };
      if (label === CONTAINER_IMAGE_LABEL) {
        if (isRegistryReference(artifact.qualified)) {
          log.note(`container image ${artifact.qualified} (pulled by the container tool)`);
          s.image = artifact.qualified;
          continue;
        }
        const image = await fetchImageFile(artifact, request, { ...access, cache: ctx.artifacts }).catch((err) => {
          throw asFault(err).with(phase);
        });
        log.note(
          `container image ${artifact.qualified}: ${formatBytes(image.bytes)}${image.cached ? " (from cache)" : ""}`,
        );
        s.image = image.path;
        continue;
      }
      if (label === "output") {
        await uploader.baseline(label, false);
        continue; // the log of this attempt replaces any earlier one
      }
      const fetched = await fetchArtifact(artifact, dirs[label]!, request, {
        ...access,
        cache: ctx.artifacts,
        budgetBytes: request.experiment.resources.hddBytes || undefined,
      }).catch((err) => {
        throw asFault(err).with(phase);
      });
      if (artifact.mutable) await uploader.baseline(label, fetched.existed);
      if (!artifact.mutable && fetched.existed) events?.emit("cache", { cache: "artifact", hit: fetched.cached });
      if (fetched.transferredBytes) events?.emit("bytes", { direction: "download", bytes: fetched.transferredBytes });
      downloadedBytes += fetched.transferredBytes;
      const size = `${fetched.files} file(s), ${formatBytes(fetched.bytes)}`;
      log.note(
        fetched.existed
          ? `artifact ${label}: ${size}${fetched.cached ? " (from cache)" : ""}`
          : `artifact ${label}: not in storage yet, starting empty`,
      );
    }
    ctx.log.info(
      `experiment ${s.key}: artifacts fetched in ${formatDuration(s.clock.nowMs() - startedMs)} ` +
        `(${formatBytes(downloadedBytes)} downloaded)`,
      { experiment: s.key },
    );
  },
};
