// The training runs page: the user's runs (paged), and the checkpoints others published.

import { api, bytes, el, every, signIn, when } from "./console.js";
import { copyButton } from "./copy.js";

const PAGE = 50;
let offset = 0;

async function showRuns() {
  const answer = await api(`/console/api/runs?limit=${PAGE}&offset=${offset}`);
  const body = document.querySelector("#runs tbody");
  body.replaceChildren(...answer.runs.map((run) => {
    const row = el("tr", undefined, { "data-run-id": run.training_run_id });
    const name = el("th", undefined, { scope: "row" });
    name.append(el("a", run.training_run_id, { href: `/console/run?id=${encodeURIComponent(run.training_run_id)}` }));
    row.append(name, el("td", run.base_model), el("td", run.lora_rank, { class: "num" }), el("td", when(run.created), { class: "when" }),
      el("td", when(run.last_request_time), { class: "when" }), el("td", run.steps_done, { class: "num steps" }),
      el("td", run.state, { class: `state ${run.state.replaceAll(" ", "-")}` }));
    return row;
  }));
  const total = answer.cursor.total_count;
  document.getElementById("runs-empty").hidden = total > 0;
  document.getElementById("page-info").textContent =
    total ? `${offset + 1}–${offset + answer.runs.length} of ${total}` : "";
  document.getElementById("newer").disabled = offset === 0;
  document.getElementById("older").disabled = offset + PAGE >= total;
}

async function showPublished() {
  const answer = await api("/console/api/published");
  const body = document.querySelector("#published tbody");
  body.replaceChildren(...answer.checkpoints.map((c) => {
    const row = el("tr");
    const path = el("th", undefined, { scope: "row" });
    path.append(el("code", c.tinker_path));
    const actions = el("td");
    actions.append(copyButton(c.tinker_path));
    row.append(path, el("td", c.checkpoint_type), el("td", c.base_model), el("td", bytes(c.size_bytes), { class: "num" }),
      el("td", when(c.time), { class: "when" }), actions);
    return row;
  }));
  document.getElementById("published-empty").hidden = answer.checkpoints.length > 0;
}

signIn(() => {
  document.getElementById("newer").addEventListener("click", () => { offset = Math.max(0, offset - PAGE); showRuns(); });
  document.getElementById("older").addEventListener("click", () => { offset += PAGE; showRuns(); });
  every(2000, showRuns);
  every(10000, showPublished);
});
