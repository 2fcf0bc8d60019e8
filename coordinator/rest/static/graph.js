// The job graph as an SVG: vertices left to right by depth, edges from the plan's inputs.
import { html, number } from "./util.js";

const W = 250;
const H = 96;
const GAP_X = 90;
const GAP_Y = 28;
const PAD = 16;

// nodes: [{id, name, parallelism, status, tasks, metrics, inputs: [{id, ship_strategy}]}]
export function layout(nodes) {
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const depth = new Map();
  const visiting = new Set();
  const depthOf = (n) => {
    if (depth.has(n.id)) return depth.get(n.id);
    if (visiting.has(n.id)) return 0; // a cycle cannot happen in a JobGraph; do not loop if it does
    visiting.add(n.id);
    const parents = (n.inputs || []).map((i) => byId.get(i.id)).filter(Boolean);
    const d = parents.length ? Math.max(...parents.map(depthOf)) + 1 : 0;
    depth.set(n.id, d);
    return d;
  };
  nodes.forEach(depthOf);
  const columns = [];
  nodes.forEach((n) => {
    const d = depth.get(n.id);
    (columns[d] = columns[d] || []).push(n);
  });
  const tallest = Math.max(1, ...columns.map((c) => c.length));
  const height = PAD * 2 + tallest * H + (tallest - 1) * GAP_Y;
  const pos = new Map();
  columns.forEach((column, d) => {
    const colHeight = column.length * H + (column.length - 1) * GAP_Y;
    const top = (height - colHeight) / 2;
    column.forEach((n, i) => pos.set(n.id, { x: PAD + d * (W + GAP_X), y: top + i * (H + GAP_Y) }));
  });
  const width = PAD * 2 + columns.length * W + Math.max(0, columns.length - 1) * GAP_X;
  return { pos, width, height };
}

function truncate(text, max) {
  const s = String(text ?? "");
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

function stateLine(tasks) {
  const entries = Object.entries(tasks || {}).filter(([, v]) => Number(v) > 0);
  if (!entries.length) return "no subtasks";
  return entries.map(([k, v]) => `${k.toUpperCase()} ${v}`).join(" · ");
}

function node(n, p) {
  const status = String(n.status || "CREATED").toUpperCase();
  const m = n.metrics;
  const records = m
    ? `Records in ${number(m["read-records"] ?? 0)} · out ${number(m["write-records"] ?? 0)}`
    : "Records: live only";
  return html`<g class="node" data-vertex="${n.id}" transform="translate(${p.x},${p.y})">
    <title>${n.name}</title>
    <rect class="box" width="${W}" height="${H}" rx="6"></rect>
    <rect width="6" height="${H}" rx="3" style="fill: var(--${status}, #8c8c8c)"></rect>
    <text class="title" x="16" y="22">${truncate(n.name, 30)}</text>
    <text class="meta" x="16" y="41">Parallelism: ${n.parallelism ?? "-"} · <tspan style="fill: var(--${status}, #8c8c8c); font-weight: 600">${status}</tspan></text>
    <text x="16" y="61">${truncate(stateLine(n.tasks), 38)}</text>
    <text class="meta" x="16" y="81">${records}</text>
  </g>`;
}

export function graph(nodes) {
  if (!nodes.length) return html`<div class="empty">No vertices.</div>`;
  const { pos, width, height } = layout(nodes);
  const edges = [];
  nodes.forEach((n) => {
    (n.inputs || []).forEach((input) => {
      const from = pos.get(input.id);
      const to = pos.get(n.id);
      if (!from || !to) return;
      const x1 = from.x + W;
      const y1 = from.y + H / 2;
      const x2 = to.x - 4;
      const y2 = to.y + H / 2;
      const mid = (x1 + x2) / 2;
      const label = input.ship_strategy || input.exchange || "";
      edges.push(html`<path class="edge" marker-end="url(#arrow)" d="M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}"></path>
        <text class="edge-label" x="${mid}" y="${(y1 + y2) / 2 - 6}" text-anchor="middle">${label}</text>`);
    });
  });
  return html`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="job graph">
    <defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#8c9bb0"></path></marker></defs>
    ${edges}
    ${nodes.map((n) => node(n, pos.get(n.id)))}
  </svg>`;
}

// Flink's /jobs/{id} answer -> graph nodes: vertices joined with the plan's edges.
export function nodesOf(job) {
  const plan = new Map(((job.plan && job.plan.nodes) || []).map((p) => [p.id, p]));
  const vertices = job.vertices || [];
  if (!vertices.length) {
    return [...plan.values()].map((p) => ({ id: p.id, name: p.description || p.operator || p.id,
      parallelism: p.parallelism, inputs: p.inputs || [] }));
  }
  return vertices.map((v) => ({ ...v, inputs: (plan.get(v.id) || {}).inputs || v.inputs || [] }));
}
