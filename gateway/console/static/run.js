// One training run: its facts, a live curve per metric, and its checkpoints with the REST API's
// actions (publish/unpublish, set TTL, delete) and copying the tinker:// path.

import { drawLine } from "./chart.js";
import { api, bytes, el, every, notice, segments, signIn, when } from "./console.js";
import { copyButton } from "./copy.js";

const runId = new URLSearchParams(location.search).get("id") || "";
// step → {name: value}; a poll re-reads the newest step, which later forward_backwards may change
const steps = new Map();
let shownCheckpoints = "";

async function pollMetrics() {
  const newest = steps.size ? Math.max(...steps.keys()) : 0;
  let after = Math.max(0, newest - 1);
  for (;;) {
    const page = await api(`/console/api/runs/${encodeURIComponent(runId)}/metrics?after_step=${after}`);
    for (const point of page.points) steps.set(point.step, point.values);
    if (!page.more || !page.points.length) break;
    after = page.points[page.points.length - 1].step;
  }
  drawCharts();
}

function drawCharts() {
  const names = [...new Set([...steps.values()].flatMap((values) => Object.keys(values)))].sort(
    (a, b) => (b === "loss:sum") - (a === "loss:sum") || a.localeCompare(b));
  const box = document.getElementById("charts");
  document.getElementById("charts-empty").hidden = names.length > 0;
  const ordered = [...steps.keys()].sort((a, b) => a - b);
  for (const name of names) {
    let figure = [...box.children].find((f) => f.dataset.metric === name);
    if (!figure) {
      figure = el("figure", undefined, { "data-metric": name });
      figure.append(el("figcaption", name), document.createElementNS("http://www.w3.org/2000/svg", "svg"));
      figure.querySelector("svg").setAttribute("role", "img");
      box.append(figure);
    }
    const points = ordered.filter((s) => name in steps.get(s)).map((s) => [s, steps.get(s)[name]]);
    drawLine(figure, points, { title: name });
  }
}

function facts(run) {
  const list = document.getElementById("run-facts");
  const items = [["Base model", run.base_model], ["LoRA rank", run.lora_rank], ["State", run.state],
    ["Steps done", run.steps_done], ["Created", when(run.created)], ["Last activity", when(run.last_request_time)],
    ["Session", run.session_id]];
  list.replaceChildren(...items.flatMap(([term, value]) => [el("dt", term), el("dd", value, { "data-fact": term })]));
}

async function act(description, request) {
  try {
    await request();
    notice("");
  } catch (exc) {
    notice(`${description} failed: ${exc.message}`);
  }
  await pollRun(true);
}

function checkpointRow(c) {
  const route = `/api/v1/training_runs/${segments(runId)}/checkpoints/${segments(c.checkpoint_id)}`;
  const row = el("tr", undefined, { "data-checkpoint": c.checkpoint_id });
  const name = el("th", undefined, { scope: "row" });
  name.append(el("code", c.checkpoint_id, { title: c.tinker_path }));
  const actions = el("td", undefined, { class: "actions" });
  const publish = el("button", c.public ? "Unpublish" : "Publish", { type: "button", "aria-label": `${c.public ? "Unpublish" : "Publish"} ${c.checkpoint_id}` });
  publish.addEventListener("click", () => act(publish.textContent, () =>
    api(`${route}/publish`, { method: c.public ? "DELETE" : "POST" })));
  const ttlForm = el("form", undefined, { class: "ttl" });
  const ttlId = `ttl-${c.checkpoint_id.replace(/[^A-Za-z0-9_-]/g, "_")}`;
  const ttlInput = el("input", undefined, { id: ttlId, type: "number", min: "1", step: "1", inputmode: "numeric", placeholder: "seconds" });
  ttlForm.append(el("label", "TTL (s)", { for: ttlId }), ttlInput,
    el("button", "Set TTL", { type: "submit", "aria-label": `Set the TTL of ${c.checkpoint_id}` }));
  ttlForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const seconds = ttlInput.value === "" ? null : Number(ttlInput.value);
    act("Setting the TTL", () => api(`${route}/ttl`, { method: "PUT", body: { ttl_seconds: seconds } }));
  });
  const remove = el("button", "Delete", { type: "button", class: "danger", "aria-label": `Delete ${c.checkpoint_id}` });
  remove.addEventListener("click", () => {
    if (confirm(`Delete ${c.tinker_path}? Its files are removed.`)) act("Deleting", () => api(route, { method: "DELETE" }));
  });
  actions.append(copyButton(c.tinker_path), publish, ttlForm, remove);
  row.append(name, el("td", c.checkpoint_type), el("td", bytes(c.size_bytes), { class: "num" }), el("td", when(c.time), { class: "when" }),
    el("td", c.expires_at ? when(c.expires_at) : "never", { class: "when" }), el("td", c.public ? "yes" : "no"), actions);
  return row;
}

// `force`: after an action, the table is redrawn even with the focus in it
async function pollRun(force = false) {
  const answer = await api(`/console/api/runs/${encodeURIComponent(runId)}`);
  facts(answer.run);
  const table = document.getElementById("checkpoints");
  const listed = JSON.stringify(answer.checkpoints);
  // the table is left alone while it is unchanged or a TTL is being typed into it
  const typing = table.contains(document.activeElement?.closest("form"));
  if (force || (listed !== shownCheckpoints && !typing)) {
    table.querySelector("tbody").replaceChildren(...answer.checkpoints.map(checkpointRow));
    shownCheckpoints = listed;
  }
  document.getElementById("checkpoints-empty").hidden = answer.checkpoints.length > 0;
}

signIn(() => {
  document.getElementById("run-id").textContent = runId;
  document.title = `${runId} · anvil console`;
  every(2000, async () => { await pollRun(); await pollMetrics(); });
});
