// tessera dashboard: renders the node's live snapshots (server-sent events from /events).
// Everything that came from the node or its peers is set as text (textContent), never as markup.
"use strict";

function h(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null) continue;
    if (k === "class") node.className = v;
    else if (k === "title") node.title = String(v);
    else if (k.startsWith("data-")) node.dataset[k.slice(5).replace(/-(\w)/g, (_, c) => c.toUpperCase())] = String(v);
    else node.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

const short = (id) => (typeof id === "string" && id.length > 16 ? id.slice(0, 8) + "…" + id.slice(-6) : String(id ?? "-"));
const num = (v, digits = 2) => (typeof v === "number" && Number.isFinite(v) ? v.toLocaleString("en-US", { maximumFractionDigits: digits }) : "-");
const bytes = (v) => (typeof v === "number" ? (v / 2 ** 20).toFixed(1) + " MiB" : "-");
const who = (m) => (m.uid !== null && m.uid !== undefined ? `uid ${m.uid} · ` : "") + short(m.peer_id);

function tile(label, value) {
  return h("div", { class: "tile" }, h("div", { class: "label" }, label), h("div", { class: "value" }, value));
}

function table(node, head, rows, numeric) {
  const cols = head.map((t, i) => h("th", { class: numeric && numeric.includes(i) ? "num" : null }, t));
  const body = rows.map((r) => h("tr", {}, r.map((c, i) => h("td", { class: numeric && numeric.includes(i) ? "num" : null }, c))));
  node.replaceChildren(h("thead", {}, h("tr", {}, cols)), h("tbody", {}, body));
}

function show(id, on) { document.getElementById(id).hidden = !on; }

function renderIdentity(node) {
  const parts = [
    `roles: ${(node.roles || []).join(", ")}`,
    `run: ${node.run_id ?? "-"}`,
    `peer: ${short(node.peer_id)}`,
    node.hotkey ? `hotkey: ${short(node.hotkey)}` : null,
    `up ${num(node.uptime_s / 60, 1)} min`,
    `store ${bytes(node.store && node.store.used)} of ${bytes(node.store && node.store.map_size)}`,
    `v${node.version}`,
  ].filter(Boolean);
  document.getElementById("identity").replaceChildren(...parts.map((p) => h("span", {}, p)));
  document.title = `tessera ${(node.roles || []).join("+")} ${short(node.peer_id)}`;
}

function renderRun(run) {
  document.getElementById("run-tiles").replaceChildren(
    tile("window", `${run.window ?? "-"}${run.windows_target ? " / " + run.windows_target : ""}`),
    tile("phase", run.done ? "done" : run.phase ?? "-"),
    tile("model", run.model ?? "-"),
    tile("optimizer step", num(run.step, 0)),
    tile("loss", num(run.loss, 4)),
    tile("tokens/s", num(run.tokens_per_s, 0)),
    tile("tokens", num(run.tokens, 0)),
  );
  lineChart(document.getElementById("loss-chart"), [{ name: "loss", points: run.loss_curve || [] }]);
  const domains = [...new Set(run.windows.flatMap((w) => Object.keys(w.perplexity || {})))].sort();
  lineChart(
    document.getElementById("ppl-chart"),
    domains.map((d) => ({ name: d, points: run.windows.map((w) => [w.window, (w.perplexity || {})[d]]) })),
    { logY: true },
  );
  lineChart(document.getElementById("tps-chart"), [{ name: "tokens/s", points: run.windows.map((w) => [w.window, w.tokens_per_s]) }]);
}

function minerCard(m) {
  return h(
    "div",
    { class: "miner-card", "data-state": m.state, "data-peer": m.peer_id, title: m.hotkey ? `hotkey ${m.hotkey}` : null },
    h("div", { class: "id" }, who(m)),
    h("div", {}, `${m.state} · ${num(m.rate, 2)} backward/s · ${m.backward} backward`),
    h("div", {}, `leases open ${m.leases ?? 0} · missed ${m.misses ?? 0} · seen ${num(m.seen_s_ago, 1)} s ago`),
    h("div", { class: "mono" }, `merged ${m.version ? m.version.slice(0, 12) : "-"}`),
  );
}

function renderStages(stages) {
  const total = stages.stages.reduce((n, s) => n + s.miners.length, 0);
  document.getElementById("stages-note").textContent =
    `${total} miners in ${stages.stages.length} stages, ${stages.standby.length} on standby, ${stages.open_leases ?? 0} leases open` +
    (stages.bottleneck !== null && stages.bottleneck !== undefined ? ` · bottleneck: stage ${stages.bottleneck}` : "");
  const columns = stages.stages.map((s) =>
    h(
      "div",
      { class: "stage" + (s.stage === stages.bottleneck ? " bottleneck" : ""), "data-stage": s.stage },
      h("h3", {}, `stage ${s.stage}` + (s.stage === stages.bottleneck ? " (bottleneck)" : "")),
      h("div", { class: "meta" }, `capacity ${num(s.capacity, 2)} · hop ${num(s.hop_s, 3)} s`),
      s.miners.map(minerCard),
    ),
  );
  if (stages.standby.length) {
    columns.push(h("div", { class: "stage" }, h("h3", {}, "standby"), stages.standby.map(minerCard)));
  }
  document.getElementById("stage-map").replaceChildren(...columns);
}

function renderMiner(m) {
  document.getElementById("miner-tiles").replaceChildren(
    tile("stage", m.standby ? "standby" : m.stage ?? "-"),
    tile("window", m.window ?? "-"),
    tile("optimizer steps", num(m.optimizer_steps, 0)),
    tile("backward passes", num(m.backward_passes, 0)),
    tile("in flight", `${m.inflight ?? 0} / ${m.max_inflight ?? "-"}`),
    tile("last loss", num(m.last_loss, 4)),
    tile("compute s", num(m.compute_s, 1)),
    tile("weights", m.weights_version ? m.weights_version.slice(0, 12) : "-"),
  );
}

function renderAudits(a) {
  const v = a.verdicts || {};
  document.getElementById("audits-note").textContent =
    `audited through window ${a.window ?? "-"}: ${v.pass ?? 0} pass, ${v.fail ?? 0} fail, ${v.inconclusive ?? 0} inconclusive`;
  // One column per window across every miner's timeline: a gap is a window not audited.
  const windows = a.miners.flatMap((m) => m.timeline.map((t) => t.window));
  const first = Math.max(Math.min(...windows), Math.max(...windows) - 47);
  const span = windows.length ? Math.max(...windows) - first + 1 : 0;
  const miners = [...a.miners].sort((x, y) => (x.uid ?? 1e9) - (y.uid ?? 1e9));
  const rows = miners.map((m) => {
    const byWindow = new Map(m.timeline.map((t) => [t.window, t]));
    const cells = Array.from({ length: span }, (_, i) => {
      const t = byWindow.get(first + i);
      return t
        ? h("div", { class: `cell ${t.outcome}`, title: `window ${t.window}: ${t.outcome} (${t.reason})`, "data-outcome": t.outcome }, t.window)
        : h("div", { class: "cell none", title: `window ${first + i}: not audited` });
    });
    return h(
      "div",
      { class: "row", "data-peer": m.peer_id },
      h("div", { class: "who", title: m.peer_id }, who(m)),
      h("div", { class: "counts" }, `${m.counts.pass ?? 0} ✓ ${m.counts.fail ?? 0} ✗ ${m.counts.inconclusive ?? 0} ?`),
      h("div", { class: "cells" }, cells),
    );
  });
  document.getElementById("audit-timeline").replaceChildren(...(rows.length ? rows : [h("p", { class: "note" }, "no verdicts yet")]));
}

function renderPay(p) {
  document.getElementById("pay-note").textContent =
    `score book of ${p.miners.length} miners` +
    (Object.keys(p.stage_weights || {}).length ? ` · stage weights ${Object.entries(p.stage_weights).map(([s, w]) => `${s}: ${num(w, 3)}`).join(", ")}` : "");
  table(
    document.getElementById("pay-table"),
    ["miner", "hotkey", "work", "incentive", "escrow", "barred through", "weight"],
    p.miners.map((m) => [who(m), short(m.hotkey), num(m.work, 0), num(m.incentive, 2), num(m.escrow, 2), m.barred_through ?? "-", num(m.weight, 4)]),
    [2, 3, 4, 6],
  );
  const set = p.set || {};
  const entries = Object.entries(set.weights || {});
  const max = Math.max(...entries.map(([, w]) => w), 1e-9);
  const holder = document.getElementById("weights-set");
  if (!entries.length) {
    holder.replaceChildren(h("p", { class: "note" }, "no weights set yet"));
    return;
  }
  const note = h("p", { class: "note" }, `at block ${set.last_block ?? "-"}, mechanism ${set.mechanism ?? 0}`);
  const rows = entries.map(([uid, w]) => {
    const bar = h("span", { class: "bar" });
    bar.style.width = `${Math.round((w / max) * 200)}px`;
    return [`uid ${uid}`, bar, num(w, 4)];
  });
  const t = h("table", { id: "weights-table" });
  table(t, ["uid", "", "weight"], rows, [2]);
  holder.replaceChildren(note, t);
}

function renderEmission(e) {
  document.getElementById("emission-note").textContent = `metagraph at block ${e.block ?? "-"}`;
  table(
    document.getElementById("emission-table"),
    ["uid", "hotkey", "stake", "incentive", "emission"],
    e.uids.map((n) => [n.uid, n.hotkey ?? "-", num(n.stake, 2), num(n.incentive, 4), num(n.emission, 4)]),
    [0, 2, 3, 4],
  );
}

function renderPeers(p) {
  document.getElementById("peers-note").textContent = `${p.connected.length} connected, ${p.admitted} admitted, ${p.known} known`;
  table(
    document.getElementById("peers-table"),
    ["peer", "hotkey", "roles", "direction", "admitted"],
    p.connected.map((c) => [short(c.peer_id), short(c.hotkey), (c.roles || []).join(", "), c.direction ?? "-", c.admitted ? "yes" : "no"]),
  );
  const reasons = Object.entries(p.refusals || {}).sort((a, b) => b[1] - a[1]);
  table(document.getElementById("refusals-table"), ["refusal reason", "count"], reasons.length ? reasons : [["none", 0]], [1]);
}

function render(view) {
  renderIdentity(view.node || {});
  const parts = [
    ["run", renderRun],
    ["stages", renderStages],
    ["miner", renderMiner],
    ["audits", renderAudits],
    ["pay", renderPay],
    ["emission", renderEmission],
    ["peers", renderPeers],
  ];
  for (const [id, draw] of parts) {
    show(id, Boolean(view[id]));
    if (view[id]) draw(view[id]);
  }
  document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
}

function connect() {
  const link = document.getElementById("link");
  const source = new EventSource("/events");
  source.addEventListener("open", () => { link.dataset.state = "live"; link.textContent = "live"; });
  source.addEventListener("error", () => { link.dataset.state = "lost"; link.textContent = "reconnecting…"; });
  source.addEventListener("snapshot", (event) => render(JSON.parse(event.data)));
}

document.addEventListener("DOMContentLoaded", connect);
