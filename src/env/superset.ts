// Whether an environment's installed distributions satisfy an experiment's pins, for
// --venv-reuse-superset. Conservative: only `name==version` pins (hashes allowed) are judged, by
// canonical name and PEP 440 equality of the version (1.0 == 1.0.0, case and a leading v
// ignored); a line with extras, a marker, a range or a wildcard is never judged satisfied, so such
// an experiment builds its own environment.

import { canonicalName } from "./requirements.ts";

/** A version in a form where PEP 440-equal versions are equal strings (or undefined if unreadable). */
export function normalVersion(v: string): string | undefined {
  const m = /^v?(?:(\d+)!)?(\d+(?:\.\d+)*)(.*)$/i.exec(v.trim().toLowerCase());
  if (!m) return undefined;
  const epoch = m[1] ? Number(m[1]) : 0;
  const release = m[2]!.split(".").map(Number);
  while (release.length > 1 && release[release.length - 1] === 0) release.pop();
  const rest = m[3]!
    .replace(/^[-_.]?(alpha|a)[-_.]?/, "a")
    .replace(/^[-_.]?(beta|b)[-_.]?/, "b")
    .replace(/^[-_.]?(rc|c|pre|preview)[-_.]?/, "rc")
    .replace(/[-_.]?(post|rev|r)[-_.]?/, ".post")
    .replace(/[-_.]?dev[-_.]?/, ".dev");
  return `${epoch}!${release.join(".")}${rest}`;
}

/** The name and version of a plain `name==version` pin (hashes dropped), else undefined. */
export function plainPin(line: string): { name: string; version: string } | undefined {
  const text = line.split(/\s+--hash/)[0]!.trim();
  const m = /^([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*==\s*([A-Za-z0-9][A-Za-z0-9.+!_-]*)$/.exec(text);
  return m ? { name: canonicalName(m[1]!), version: m[2]! } : undefined;
}

/** Whether every pin is met; an experiment without pins is never served by a prepared environment. */
export function satisfiesPins(distributions: Record<string, string>, requirements: string[]): boolean {
  if (!requirements.length) return false;
  const have = new Map(Object.entries(distributions).map(([k, v]) => [canonicalName(k), normalVersion(v)]));
  return requirements.every((line) => {
    const pin = plainPin(line);
    if (!pin) return false;
    const want = normalVersion(pin.version);
    return want !== undefined && have.get(pin.name) === want;
  });
}
