// The server's figures, with training and sampling throughput measured between two readings.

import { drawLine } from "./chart.js";
import { api, bytes, el, every, number, signIn } from "./console.js";

const KEPT_READINGS = 150; // 5 minutes at one reading every 2 s
let previous = null, started = null;
const rates = { train: [], sample: [] };

function facts(id, items) {
  document.getElementById(id).replaceChildren(
    ...items.flatMap(([term, value]) => [el("dt", term), el("dd", value, { "data-fact": term })]));
}

function rate(value) {
  return value === null ? "measuring…" : Math.round(value).toLocaleString();
}

function seconds(value) {
  return value === null ? "—" : `${(value * 1000).toFixed(1)} ms`;
}

async function poll() {
  const now = await api("/console/api/server");
  const t = now.training, s = now.sampling;
  started ??= now.clock_s;
  let trainRate = null, sampleRate = null;
  if (previous) {
    const elapsed = now.clock_s - previous.clock_s;
    trainRate = (t.tokens - previous.training.tokens) / elapsed;
    sampleRate = (s.tokens_generated - previous.sampling.tokens_generated) / elapsed;
    const at = Number((now.clock_s - started).toFixed(1));
    rates.train.push([at, trainRate]);
    rates.sample.push([at, sampleRate]);
    for (const list of Object.values(rates)) list.splice(0, list.length - KEPT_READINGS);
  }
  previous = now;
  facts("training", [
    ["Queued operations", t.queued_ops], ["Models loaded", t.models_loaded],
    ["Tokens/s", rate(trainRate)],
    ["Ticks", t.ticks], ["Mean tokens per tick", number(t.tick_tokens.mean, 3)],
    ["Mean adapters per tick", number(t.tick_adapters.mean, 3)], ["Mean queue wait", seconds(t.queue_wait_s.mean)],
    ["Mean tick compute", seconds(t.compute_s.mean)], ["Operations ok / failed", `${t.ops_ok} / ${t.ops_failed}`],
    ["Tokens trained", t.tokens],
  ]);
  facts("sampling", [
    ["Requests in flight", s.in_flight], ["Tokens/s", rate(sampleRate)],
    ["Adapters loaded", s.adapters_resident], ["Requests ok / failed", `${s.requests_ok} / ${s.requests_failed}`],
    ["Tokens generated", s.tokens_generated],
  ]);
  const store = now.store;
  facts("store", [
    ["Database", bytes(store.database_bytes)], ["Checkpoints", `${store.checkpoints} (${bytes(store.checkpoint_bytes)})`],
    ["Training runs", store.training_runs], ["Sessions", store.sessions],
  ]);
  document.querySelector("#engines tbody").replaceChildren(...s.engines.map((e) => {
    const row = el("tr");
    row.append(el("th", e.engine, { scope: "row" }), el("td", e.kind), el("td", e.base_model),
      ...[e.queue_depth, e.requests_done, e.tokens_generated, e.adapters_resident, e.restarts].map((v) => el("td", v, { class: "num" })));
    return row;
  }));
  drawLine(document.getElementById("train-rate"), rates.train, { title: "training tokens/s", xName: "seconds", fromZero: true });
  drawLine(document.getElementById("sample-rate"), rates.sample, { title: "sampling tokens/s", xName: "seconds", fromZero: true });
}

signIn(() => every(2000, poll));
