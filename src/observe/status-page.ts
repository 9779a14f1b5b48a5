// The status page served at /: one HTML document with its CSS and JS inline, compiled into the
// binary as a string; it polls /status every second and draws it (text only, never markup). Log
// lines appear only when /status carries them (--status-logs).

export const STATUS_PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>studio-runner</title>
<style>
  :root { --bg: #f6f7f9; --card: #fff; --ink: #1d2330; --muted: #6b7385; --line: #e2e5ea;
          --ok: #1f8a4c; --warn: #b7791f; --bad: #c53030; --accent: #2b6cb0; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
         background: var(--bg); color: var(--ink); }
  header { display: flex; flex-wrap: wrap; gap: 12px 24px; align-items: baseline; padding: 14px 24px;
           background: var(--ink); color: #fff; }
  header h1 { font-size: 18px; margin: 0; }
  header .meta { color: #c5cad6; font-size: 13px; }
  main { padding: 16px 24px; display: grid; gap: 16px; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); }
  section { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; }
  section.wide { grid-column: 1 / -1; }
  h2 { font-size: 14px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); margin: 0 0 8px; }
  table { width: 100%; border-collapse: collapse; }
  th, td { text-align: left; padding: 4px 8px 4px 0; border-bottom: 1px solid var(--line); vertical-align: top; }
  th { color: var(--muted); font-weight: 500; }
  .badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600;
           color: #fff; background: var(--muted); }
  .running, .succeeded, .healthy, .ready, .served { background: var(--ok); }
  .suspended, .requeued, .notready { background: var(--warn); }
  .terminating, .failed, .poisoned, .rejected, .unhealthy { background: var(--bad); }
  .phase { background: var(--accent); }
  .bar { height: 8px; background: var(--line); border-radius: 4px; overflow: hidden; min-width: 120px; }
  .bar > div { height: 100%; background: var(--accent); }
  .experiment { border: 1px solid var(--line); border-radius: 6px; padding: 8px 10px; margin-bottom: 10px; }
  .experiment .title { display: flex; gap: 10px; align-items: baseline; flex-wrap: wrap; }
  .key { font-family: ui-monospace, Menlo, Consolas, monospace; font-weight: 600; }
  .muted { color: var(--muted); }
  pre.log { margin: 8px 0 0; max-height: 260px; overflow: auto; background: #10141c; color: #d7dde8;
            padding: 8px; border-radius: 4px;
            font: 12px/1.4 ui-monospace, Menlo, Consolas, monospace; white-space: pre-wrap; word-break: break-all; }
  #error { color: var(--bad); }
</style>
</head>
<body>
<header>
  <h1>studio-runner <span id="version" class="meta"></span></h1>
  <span class="meta">host <b id="host">…</b></span>
  <span class="meta">runner <b id="runner-id">…</b></span>
  <span class="meta">up <b id="uptime">…</b></span>
  <span id="state" class="badge">…</span>
  <span id="health" class="badge">…</span>
  <span id="health-reason" class="meta"></span>
  <span id="error"></span>
</header>
<main>
  <section class="wide"><h2>Running experiments (<span id="running-count">0</span>)</h2>
    <div id="running"><p class="muted">none</p></div></section>
  <section><h2>Resources</h2><table id="resources"></table></section>
  <section><h2>Queues</h2><table id="queues"></table></section>
  <section class="wide"><h2>Recently finished</h2><table id="finished"></table></section>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k === "class") node.className = v; else node.setAttribute(k, String(v));
  }
  for (const c of children)
    node.append(c instanceof Node ? c : document.createTextNode(c === undefined || c === null ? "" : String(c)));
  return node;
}
function duration(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return s + " s";
  const m = Math.floor(s / 60), h = Math.floor(m / 60);
  return h ? h + " h " + (m % 60) + " min" : m + " min " + (s % 60) + " s";
}
function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0; while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}
function ago(iso) { return iso ? duration(Date.now() - Date.parse(iso)) + " ago" : "never"; }
function badge(text, cls) { return el("span", { class: "badge " + (cls || text) }, text); }
function rows(table, head, body) {
  table.replaceChildren(el("tr", {}, ...head.map((h) => el("th", {}, h))),
    ...body.map((cells) => el("tr", {}, ...cells.map((c) => el("td", {}, c)))));
}
function bar(used, total) {
  const pct = total > 0 ? Math.min(100, (100 * used) / total) : 0;
  const inner = el("div"); inner.style.width = pct.toFixed(1) + "%";
  return el("div", { class: "bar", title: pct.toFixed(0) + "%" }, inner);
}
function draw(s) {
  const r = s.runner;
  $("version").textContent = r.version;
  $("host").textContent = r.host;
  $("runner-id").textContent = r.id;
  $("uptime").textContent = duration(r.uptimeMs);
  $("state").textContent = r.state; $("state").className = "badge " + r.state;
  $("state").title = r.stateReason || "";
  const h = r.healthy === false ? "unhealthy" : r.ready === false ? "notready" : "healthy";
  $("health").textContent = h === "notready" ? "not ready" : h; $("health").className = "badge " + h;
  $("health-reason").textContent = r.healthReason || "";

  const running = $("running");
  $("running-count").textContent = s.running.length;
  running.replaceChildren(...(s.running.length ? s.running.map((x) => {
    const log = x.log ? el("pre", { class: "log" }, x.log.join("\\n"))
      : el("p", { class: "nolog muted" }, "log lines are not shown (the runner's --status-logs is off)");
    const card = el("div", { class: "experiment", "data-key": x.key, "data-phase": x.phase || "" },
      el("div", { class: "title" },
        el("span", { class: "key" }, x.key),
        badge(x.phase || "starting", "phase"),
        el("span", { class: "elapsed muted" }, "running " + duration(x.elapsedMs)),
        el("span", { class: "muted" }, x.source + " / " + x.queue + " · delivery " + x.deliveryCount),
        el("span", { class: "muted" }, x.resources.cpus + " cpu · " + bytes(x.resources.ramBytes) + " RAM" +
          (x.gpus.length ? " · GPUs " + x.gpus.join(", ") : x.resources.gpus ? " · " + x.resources.gpus + " GPU" : "")),
        x.project ? el("span", { class: "muted" }, "project " + x.project) : ""),
      log);
    return card;
  }) : [el("p", { class: "muted" }, "none")]));
  for (const pre of running.querySelectorAll("pre.log")) pre.scrollTop = pre.scrollHeight;

  const res = s.resources, body = [];
  if (res) {
    body.push(["CPUs", res.used.cpus + " / " + res.capacity.cpus, bar(res.used.cpus, res.capacity.cpus)]);
    body.push(["RAM", bytes(res.used.ramBytes) + " / " + bytes(res.capacity.ramBytes),
      bar(res.used.ramBytes, res.capacity.ramBytes)]);
    body.push(["Disk", bytes(res.used.hddBytes) + " / " + bytes(res.capacity.hddBytes),
      bar(res.used.hddBytes, res.capacity.hddBytes)]);
    const cards = s.gpus.cards.filter((c) => c.inService), busy = cards.filter((c) => c.allocated).length;
    if (cards.length) body.push(["GPU cards", busy + " / " + cards.length, bar(busy, cards.length)]);
    else if (res.capacity.gpus > 0)
      body.push(["GPUs", res.used.gpus + " / " + res.capacity.gpus, bar(res.used.gpus, res.capacity.gpus)]);
  }
  for (const c of s.gpus.cards) {
    body.push(["GPU " + c.index, (c.inService ? (c.allocated ? "allocated" : "free") : "out of service") +
      (c.utilizationGpuPct === undefined || c.utilizationGpuPct === null ? "" : " · " + c.utilizationGpuPct + "% busy"),
      c.uuid]);
  }
  rows($("resources"), ["", "in use / capacity", ""], body);

  rows($("queues"), ["queue", "state", "last checked", "last took work", "taken"], s.queues.map((q) => [
    el("span", { class: "key" }, q.source + " / " + q.name),
    badge(q.served ? "served" : "not listed", q.served ? "served" : ""),
    ago(q.lastCheckedAt), ago(q.lastTookAt), q.taken,
  ]).concat(s.sources.filter((x) => x.lastError).map((x) =>
    [x.source, badge("error", "failed"), ago(x.lastErrorAt), x.lastError, ""])));

  rows($("finished"), ["experiment", "outcome", "took", "finished", "reason"], s.finished.map((f) => [
    el("span", { class: "key" }, f.key), badge(f.result), duration(f.durationMs), ago(f.finishedAt), f.reason,
  ]));
}
async function tick() {
  try {
    const response = await fetch("status", { cache: "no-store" });
    if (!response.ok) throw new Error("/status answered " + response.status);
    draw(await response.json());
    $("error").textContent = "";
  } catch (err) {
    $("error").textContent = "runner unreachable: " + err.message;
  }
  setTimeout(tick, 1000);
}
tick();
</script>
</body>
</html>
`;
