// Line charts drawn as SVG by the page itself (no library): lineChart(container, series, options).
// series: [{name, color, points: [[x, y], ...]}]. Labels are set with textContent only.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const PALETTE = ["#2f6fb0", "#c8423b", "#3f9a55", "#d99a2b", "#7b4fa8", "#1f9aa3"];

function svgEl(tag, attrs) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}

function niceTicks(lo, hi, count, integer) {
  if (!(hi > lo)) { hi = lo + 1; }
  const raw = (hi - lo) / count;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  let step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  if (integer) step = Math.max(1, Math.round(step));
  const ticks = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(t);
  return ticks;
}

function fmtTick(v) {
  const a = Math.abs(v);
  if (a >= 1e6) return (v / 1e6).toFixed(1) + "M";
  if (a >= 1e4) return (v / 1e3).toFixed(0) + "k";
  if (a >= 100 || Number.isInteger(v)) return v.toFixed(0);
  return v.toPrecision(3);
}

function lineChart(container, series, options) {
  const opts = Object.assign({ width: 480, height: 200, logY: false }, options || {});
  const W = opts.width, H = opts.height, L = 46, R = 10, T = 10, B = 24;
  const clean = series.map((s, i) => ({
    name: s.name,
    color: s.color || PALETTE[i % PALETTE.length],
    points: (s.points || []).filter((p) => Number.isFinite(p[0]) && Number.isFinite(p[1]) && (!opts.logY || p[1] > 0)),
  }));
  const all = clean.flatMap((s) => s.points);
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, role: "img" });
  container.replaceChildren(svg);
  container.dataset.points = String(all.length);
  if (all.length === 0) {
    const t = svgEl("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty" });
    t.textContent = "no data yet";
    svg.appendChild(t);
    return;
  }
  const fy = opts.logY ? Math.log10 : (v) => v;
  const xs = all.map((p) => p[0]), ys = all.map((p) => fy(p[1]));
  let x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  if (x1 === x0) { x0 -= 1; x1 += 1; }
  if (y1 === y0) { y0 -= 0.5; y1 += 0.5; }
  const pad = (y1 - y0) * 0.05; y0 -= pad; y1 += pad;
  const sx = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const sy = (y) => T + (1 - (fy(y) - y0) / (y1 - y0)) * (H - T - B);
  svg.appendChild(svgEl("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" }));
  svg.appendChild(svgEl("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }));
  for (const t of niceTicks(y0, y1, 4, false)) {
    const v = opts.logY ? Math.pow(10, t) : t;
    const y = T + (1 - (t - y0) / (y1 - y0)) * (H - T - B);
    svg.appendChild(svgEl("line", { x1: L, y1: y, x2: W - R, y2: y, class: "axis", "stroke-dasharray": "2 3" }));
    const label = svgEl("text", { x: L - 4, y: y + 3, "text-anchor": "end", class: "tick" });
    label.textContent = fmtTick(v);
    svg.appendChild(label);
  }
  const integerX = xs.every(Number.isInteger);
  for (const t of niceTicks(x0, x1, 5, integerX)) {
    if (t < x0 || t > x1) continue;
    const label = svgEl("text", { x: sx(t), y: H - 8, "text-anchor": "middle", class: "tick" });
    label.textContent = fmtTick(t);
    svg.appendChild(label);
  }
  for (const s of clean) {
    if (s.points.length === 0) continue;
    const d = s.points.map((p) => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" ");
    const line = svgEl("polyline", { points: d, class: "series", stroke: s.color });
    line.dataset.name = s.name;
    line.dataset.count = String(s.points.length);
    svg.appendChild(line);
    if (s.points.length === 1) {
      const p = s.points[0];
      svg.appendChild(svgEl("circle", { cx: sx(p[0]), cy: sy(p[1]), r: 3, fill: s.color }));
    }
  }
  if (clean.length > 1) {
    const legend = document.createElement("div");
    legend.className = "legend";
    for (const s of clean) {
      const item = document.createElement("span");
      const swatch = document.createElement("i");
      swatch.style.background = s.color;
      item.append(swatch, document.createTextNode(s.name));
      legend.appendChild(item);
    }
    container.appendChild(legend);
  }
}

window.lineChart = lineChart;
