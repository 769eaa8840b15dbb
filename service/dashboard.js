// The dashboard's page script: polls /dashboard/state and draws it. Every value reaches the
// page through textContent or an attribute, never as HTML. The admin token stays in this
// tab's sessionStorage and travels only as a bearer header, never in a cookie.
"use strict";

const POLL_MS = 2000;
const TOKEN_KEY = "renderq-admin-token";
const SVG = "http://www.w3.org/2000/svg";
let readOnly = true;
let timer = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value !== null && value !== undefined) node.setAttribute(name, String(value));
  }
  node.append(...children.map((child) => (child instanceof Node ? child : String(child))));
  return node;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function known(value) {
  return value !== null && value !== undefined;
}

function ms(value) {
  if (!known(value)) return "–";
  return value < 1000 ? `${value.toFixed(value < 10 ? 1 : 0)} ms` : `${(value / 1000).toFixed(2)} s`;
}

function bytes(value) {
  if (!known(value)) return "–";
  const units = ["B", "KB", "MB", "GB"];
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}

function seconds(value) {
  if (!known(value)) return "–";
  if (value < 60) return `${value.toFixed(value < 10 ? 1 : 0)} s`;
  if (value < 3600) return `${Math.floor(value / 60)} min`;
  return `${(value / 3600).toFixed(1)} h`;
}

function clock(unix) {
  return known(unix) && unix ? new Date(unix * 1000).toLocaleTimeString() : "–";
}

// A number card: its exact value in data-value (what the tests read), rounded for the eye.
function setNumber(id, value, shown) {
  const node = document.getElementById(id);
  node.dataset.value = known(value) ? String(value) : "";
  node.textContent = known(value) ? shown || String(value) : "–";
}

function rows(tableId, built, columns, emptyText) {
  const body = document.querySelector(`#${tableId} tbody`);
  if (!built.length) {
    built = [el("tr", { class: "empty" }, el("td", { colspan: columns }, emptyText))];
  }
  body.replaceChildren(...built);
}

function renderSandbox(sandbox) {
  const badge = document.getElementById("isolation");
  badge.dataset.status = sandbox.status;
  badge.textContent = sandbox.status;
  const detail = document.getElementById("sandbox-detail");
  detail.textContent = sandbox.weakened.length ? `missing: ${sandbox.weakened.join(", ")}` : "";
}

function renderQueue(queue, rate) {
  setNumber("waiting", queue.waiting);
  setNumber("running", queue.running);
  setNumber("dead-count", queue.dead_letters);
  setNumber("rate", rate.per_second, rate.per_second.toFixed(2));
  document.getElementById("rate-label").textContent = `jobs/s, last ${rate.window_seconds} s`;
  setNumber("submitted", queue.totals.submitted);
  setNumber("done", queue.totals.done);
  setNumber("failed", queue.totals.failed);
}

function renderChart(series) {
  const chart = document.getElementById("chart");
  const [width, height, left, right, top, bottom] = [600, 170, 34, 34, 8, 18];
  const points = series.points;
  const plotWidth = width - left - right;
  const plotHeight = height - top - bottom;
  const slot = plotWidth / points.length;
  const rates = points.map((point) => point.ended / series.step_seconds);
  const depths = points.map((point) => point.depth);
  const maxRate = Math.max(1, ...rates);
  const maxDepth = Math.max(1, ...depths.filter(known));
  const y = (value, max) => top + plotHeight - (value / max) * plotHeight;
  const parts = [];
  for (let i = 0; i <= 4; i += 1) {
    const lineY = top + (plotHeight * i) / 4;
    parts.push(svg("line", { class: "grid", x1: left, x2: width - right, y1: lineY, y2: lineY }));
  }
  parts.push(svg("text", { x: left - 4, y: top + 8, "text-anchor": "end" }, String(maxDepth)));
  parts.push(svg("text", { x: left - 4, y: top + plotHeight, "text-anchor": "end" }, "0"));
  parts.push(svg("text", { x: width - right + 4, y: top + 8 }, `${maxRate.toFixed(1)}/s`));
  rates.forEach((rate, i) => {
    if (!rate) return;
    const barY = y(rate, maxRate);
    const attrs = { class: "bar", x: left + i * slot + 1, y: barY, width: Math.max(1, slot - 2) };
    parts.push(svg("rect", { ...attrs, height: top + plotHeight - barY, "data-rate": rate }));
  });
  // The depth is a line through the samples the fronts took; a lone sample is a dot.
  let path = "";
  depths.forEach((depth, i) => {
    if (!known(depth)) return;
    const [x, pointY] = [left + (i + 0.5) * slot, y(depth, maxDepth)];
    path += `${path ? "L" : "M"}${x.toFixed(1)},${pointY.toFixed(1)}`;
    if (!known(depths[i - 1]) && !known(depths[i + 1])) {
      parts.push(svg("circle", { class: "dot", cx: x, cy: pointY, r: 2.5 }));
    }
  });
  if (path) parts.push(svg("path", { class: "depth", d: path }));
  const minutes = (points.length * series.step_seconds) / 60;
  for (let m = 0; m <= minutes; m += 1) {
    const x = left + plotWidth - (m / minutes) * plotWidth;
    const label = m ? `-${m} min` : "now";
    parts.push(svg("text", { x, y: height - 4, "text-anchor": "middle" }, label));
  }
  chart.replaceChildren(...parts);
}

function renderTimes(times) {
  const built = Object.entries(times).map(([engine, t]) =>
    el(
      "tr",
      { "data-engine": engine, "data-p50": t.p50_ms, "data-p95": t.p95_ms, "data-count": t.count },
      el("td", {}, engine),
      el("td", { class: "num" }, ms(t.p50_ms)),
      el("td", { class: "num" }, ms(t.p95_ms)),
      el("td", { class: "num" }, t.count),
    ),
  );
  rows("render-times", built, 4, "no job done lately");
}

function workerRow(worker) {
  const attrs = {
    "data-worker": worker.name,
    "data-alive": worker.alive,
    "data-jobs-done": worker.jobs_done,
    "data-job": worker.job,
  };
  if (!worker.alive) {
    return el(
      "tr",
      attrs,
      el("td", {}, worker.name),
      el("td", { class: "dead" }, "dead"),
      el("td", { colspan: 7, class: "muted" }, `holding ${worker.holding}: taken back once its lease expires`),
    );
  }
  const weakened = worker.weakened.length;
  return el(
    "tr",
    attrs,
    el("td", {}, worker.name),
    el("td", { class: "alive" }, "alive"),
    el("td", { class: weakened ? "weak" : "" }, weakened ? `missing ${worker.weakened.join(", ")}` : "isolated"),
    el("td", { class: "num" }, known(worker.jobs_done) ? worker.jobs_done : "–"),
    el("td", { class: "tag" }, worker.job || (worker.holding ? "(starting)" : "idle")),
    el("td", { class: "num" }, worker.job ? seconds(worker.job_seconds) : ""),
    el("td", { class: "num" }, bytes(worker.rss_bytes)),
    el("td", { class: "num" }, bytes(worker.peak_rss_bytes)),
    el("td", { class: "num" }, seconds(worker.up_seconds)),
  );
}

function renderWorkers(workers) {
  rows("workers", workers.map(workerRow), 9, "no worker is alive");
}

function renderFailures(failures) {
  const built = failures.map((f) =>
    el(
      "tr",
      { "data-job": f.job, "data-code": f.code, "data-dead-lettered": f.dead_lettered },
      el("td", {}, clock(f.at)),
      el("td", { class: "tag" }, f.job),
      el("td", {}, f.dead_lettered ? "failed, dead-lettered" : "failed"),
      el("td", { class: "code" }, f.code || "–"),
      el("td", {}, f.kind),
      el("td", {}, f.engine),
      el("td", {}, f.worker || "–"),
      el("td", { class: "num" }, f.attempt),
    ),
  );
  rows("failures", built, 8, "no failure lately");
}

function deadLetterRow(dead) {
  const button = el("button", { type: "button", "data-entry": dead.entry }, "requeue");
  const token = sessionStorage.getItem(TOKEN_KEY);
  button.disabled = readOnly || !token;
  button.title = readOnly ? "read-only: no RENDERQ_ADMIN_TOKEN" : token ? "" : "enter the admin token first";
  button.addEventListener("click", () => requeue(dead.entry, button));
  const since = Number(dead.entry.split("-")[0]) / 1000;
  const attrs = { "data-entry": dead.entry, "data-job": dead.job, "data-status": dead.status };
  return el(
    "tr",
    { ...attrs, "data-can-requeue": !button.disabled },
    el("td", {}, clock(dead.failed_at || since)),
    el("td", { class: "tag" }, dead.job),
    el("td", {}, dead.kind || "–"),
    el("td", {}, dead.engine || "–"),
    el("td", { class: "num" }, known(dead.attempts) ? dead.attempts : "–"),
    el("td", { class: "code" }, dead.status === "expired" ? "expired" : dead.code || "–"),
    el("td", {}, button),
  );
}

function renderDeadLetters(deadLetters, total) {
  document.getElementById("read-only").hidden = !readOnly;
  document.getElementById("token-form").hidden = readOnly;
  const shown = document.getElementById("dead-shown");
  shown.textContent = total > deadLetters.length ? `(the oldest ${deadLetters.length} of ${total})` : "";
  rows("dead-letters", deadLetters.map(deadLetterRow), 7, "no dead letter");
}

function render(state) {
  readOnly = state.read_only;
  renderSandbox(state.sandbox);
  renderQueue(state.queue, state.rate);
  renderChart(state.series);
  renderTimes(state.render_times);
  renderWorkers(state.workers);
  renderFailures(state.failures);
  renderDeadLetters(state.dead_letters, state.queue.dead_letters);
  document.body.dataset.state = "live";
  document.body.dataset.updated = String(state.now);
}

function setConnection(text, ok) {
  const node = document.getElementById("connection");
  node.textContent = text;
  node.dataset.ok = String(ok);
}

function notice(text, ok) {
  const node = document.getElementById("notice");
  node.textContent = text;
  node.dataset.ok = String(ok);
}

async function errorOf(response) {
  try {
    const body = await response.json();
    return `${body.error.code}: ${body.error.message}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}

async function poll() {
  clearTimeout(timer);
  try {
    const token = sessionStorage.getItem(TOKEN_KEY);
    const headers = token ? { Authorization: `Bearer ${token}` } : {};
    const response = await fetch("/dashboard/state", { cache: "no-store", headers });
    // With RENDERQ_AUTH=required the page's data needs an admin key: offer the field for it.
    if (response.status === 401) document.getElementById("token-form").hidden = false;
    if (!response.ok) throw new Error(await errorOf(response));
    render(await response.json());
    setConnection(`updated ${new Date().toLocaleTimeString()}`, true);
  } catch (error) {
    document.body.dataset.state = "error";
    setConnection(`not updated: ${error.message}`, false);
  } finally {
    timer = setTimeout(poll, POLL_MS);
  }
}

async function requeue(entry, button) {
  button.disabled = true;
  const token = sessionStorage.getItem(TOKEN_KEY) || "";
  try {
    const response = await fetch(`/dashboard/dead-letters/${encodeURIComponent(entry)}/requeue`, {
      method: "POST",
      headers: { Authorization: `Bearer ${token}` },
    });
    if (response.ok) {
      notice(`requeued job ${(await response.json()).job}`, true);
    } else {
      notice(`not requeued: ${await errorOf(response)}`, false);
    }
  } catch (error) {
    notice(`not requeued: ${error.message}`, false);
  }
  poll();
}

function setUpToken() {
  const input = document.getElementById("admin-token");
  input.value = sessionStorage.getItem(TOKEN_KEY) || "";
  document.getElementById("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    notice("token kept for this tab", true);
    poll();
  });
  document.getElementById("forget-token").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    input.value = "";
    notice("token forgotten", true);
    poll();
  });
}

setUpToken();
poll();
