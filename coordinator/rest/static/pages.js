// Overview, job list, task managers and replicas: one render function per page.
import {
  get, html, badge, counts, time, duration, number, ago, table, panel, TERMINAL,
} from "./util.js";

function jobRows(jobs) {
  return jobs.map((j) => html`<tr class="link" data-job="${j.jid}">
    <td><a href="#/jobs/${j.jid}">${j.name}</a><div class="muted mono">${j.jid}</div></td>
    <td>${time(j["start-time"])}</td>
    <td>${duration(j.duration)}</td>
    <td>${j["end-time"] > 0 ? time(j["end-time"]) : "-"}</td>
    <td>${counts(j.tasks)}</td>
    <td>${badge(j.state)}</td>
  </tr>`);
}

const JOB_HEADERS = ["Job", "Start time", "Duration", "End time", "Tasks", "Status"];

function byStatus(jobs) {
  const tally = new Map();
  jobs.forEach((j) => tally.set(j.state, (tally.get(j.state) || 0) + 1));
  return [...tally.entries()].sort((a, b) => b[1] - a[1]);
}

export async function overview() {
  const [ov, list, leader] = await Promise.all([
    get("overview"), get("jobs/overview"), get("cluster/leader").catch(() => null),
  ]);
  const jobs = list.jobs || [];
  const running = jobs.filter((j) => !TERMINAL.has(j.state));
  const statuses = byStatus(jobs);
  const card = (label, value, id) => html`<div class="card" id="${id}"><div class="label">${label}</div><div class="value">${value}</div></div>`;
  return html`
    <div class="cards">
      ${card("Task Managers", number(ov.taskmanagers), "card-taskmanagers")}
      ${card("Available task slots", html`${number(ov["slots-available"])} <small>of ${number(ov["slots-total"])}</small>`, "card-slots")}
      ${card("Running jobs", number(ov["jobs-running"]), "card-running")}
      ${card("Finished", number(ov["jobs-finished"]), "card-finished")}
      ${card("Canceled", number(ov["jobs-cancelled"]), "card-canceled")}
      ${card("Failed", number(ov["jobs-failed"]), "card-failed")}
      ${leader ? card("Leader", html`<span class="mono" style="font-size:16px">${leader.leader ?? leader["leader-id"] ?? "-"}</span> <small>epoch ${leader.epoch ?? "-"}</small>`, "card-leader") : ""}
    </div>
    ${panel(html`Jobs by status`, statuses.length
      ? html`<div class="body" id="jobs-by-status">${statuses.map(([s, n]) => html`<span style="margin-right:18px">${badge(s)} ${n}</span>`)}</div>`
      : html`<div class="empty">No jobs.</div>`)}
    ${panel(html`Running jobs`, table(JOB_HEADERS, jobRows(running), "No running jobs."))}
  `;
}

export async function jobs() {
  const list = await get("jobs/overview");
  const all = (list.jobs || []).slice().sort((a, b) => (b["start-time"] || 0) - (a["start-time"] || 0));
  const running = all.filter((j) => !TERMINAL.has(j.state));
  const done = all.filter((j) => TERMINAL.has(j.state));
  return html`
    ${panel(html`Running jobs <span class="muted">${running.length}</span>`, table(JOB_HEADERS, jobRows(running), "No running jobs."), "running-jobs")}
    ${panel(html`Completed jobs <span class="muted">${done.length}</span>`, table(JOB_HEADERS, jobRows(done), "No completed jobs."), "completed-jobs")}
  `;
}

// Flink names it timeSinceLastHeartbeat but sends the heartbeat's timestamp; accept both.
function heartbeatAt(tm, now) {
  const v = Number(tm.timeSinceLastHeartbeat ?? tm["last-heartbeat"] ?? 0);
  if (!v) return 0;
  return v > 1e12 ? v : now - v;
}

export async function taskmanagers() {
  const answer = await get("taskmanagers");
  const now = Date.now();
  const rows = (answer.taskmanagers || []).map((tm) => {
    const beat = heartbeatAt(tm, now);
    return html`<tr data-tm="${tm.id}">
      <td class="mono">${tm.id}</td>
      <td>${tm.path || "-"}</td>
      <td class="num">${number(tm.slotsNumber)}</td>
      <td class="num">${number(tm.freeSlots)}</td>
      <td title="${time(beat)}">${ago(beat, now)}</td>
      <td>${tm.incarnation ? html`<span class="mono">${tm.incarnation}</span>` : "-"}</td>
    </tr>`;
  });
  return panel(html`Task Managers <span class="muted">${rows.length}</span>`,
    table(["ID", "Address", "#Slots", "#Free slots", "Last heartbeat", "Incarnation"], rows, "No task manager has joined."),
    "taskmanagers");
}

export async function replicas() {
  const leader = await get("cluster/leader");
  const list = leader.replicas || [];
  const rows = list.map((r) => {
    const id = r.id ?? r["replica-id"];
    const isLeader = id === (leader.leader ?? leader["leader-id"]);
    return html`<tr data-replica="${id}">
      <td class="mono">${id}</td>
      <td>${isLeader ? html`<span class="badge" style="background: var(--FINISHED)">LEADER</span>` : html`<span class="badge" style="background: #8c8c8c">${String(r.role || "STANDBY").toUpperCase()}</span>`}</td>
      <td class="num">${number(r.offset ?? r["applied-offset"])}</td>
      <td class="num">${number(r.lag)}</td>
      <td>${r.epoch ?? "-"}</td>
      <td>${r.url ? html`<a href="${r.url}">${r.url}</a>` : "-"}</td>
    </tr>`;
  });
  return html`
    <div class="cards">
      <div class="card" id="card-leader"><div class="label">Leader</div><div class="value mono" style="font-size:18px">${leader.leader ?? leader["leader-id"] ?? "none"}</div></div>
      <div class="card"><div class="label">Epoch</div><div class="value">${leader.epoch ?? "-"}</div></div>
      <div class="card"><div class="label">Journal end offset</div><div class="value">${number(leader["end-offset"] ?? leader.end_offset)}</div></div>
    </div>
    ${panel(html`Replicas <span class="muted">${rows.length}</span>`,
      table(["Replica", "Role", "#Applied offset", "#Lag", "Epoch", "REST"], rows, "No replica has reported."), "replicas")}
  `;
}
