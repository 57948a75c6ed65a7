// The live sale dashboard (docs/dashboard.md): a stream ticket fetched with the credential,
// one Server-Sent Event a second, charts drawn on canvas by this file (no library, no CDN).
"use strict";

const OUTCOME_COLORS = {
  created: "#1b9e4b", repeat: "#7aa6d8", sold_out: "#d9822b", not_started: "#9b59b6",
  ended: "#7f8c8d", rate_limited: "#c0392b", challenge_failed: "#e84393",
  service_unavailable: "#2c3e50",
};
const HISTORY = 600; // snapshots kept for the remaining-stock chart (ten minutes)
const ACTIVITIES_EVERY_MS = 5000; // the activity list is read again this often
const $ = (id) => document.getElementById(id);

let source = null;
let watching = null; // the activity id being watched
let remainingHistory = []; // [unix seconds, units]
const outboxHistory = []; // [unix seconds, backlog, lag]
let retry = null;

function setStatus(text, error) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

// The newest 100 activities, read again every few seconds: a sale created after the page
// opened appears without a reload (which would lose the credential). The choice is kept.
async function loadActivities() {
  let page;
  try {
    const reply = await fetch("/activities?limit=100");
    if (!reply.ok) { setStatus("cannot list activities: " + reply.status, true); return; }
    page = await reply.json();
  } catch (error) {
    return; // the service restarting: the next round tries again
  }
  const select = $("activity");
  const chosen = select.value;
  const known = Array.from(select.options, (option) => option.value).join(",");
  if (page.items.map((activity) => String(activity.id)).join(",") === known) return;
  select.textContent = "";
  for (const activity of page.items) {
    const option = document.createElement("option");
    option.value = activity.id;
    option.textContent = `#${activity.id} ${activity.name} (${activity.stock} units)`;
    select.appendChild(option);
  }
  if (chosen) select.value = chosen;
}

async function fetchTicket() {
  const credential = $("credential").value.trim();
  // A token is three dot-separated parts; anything else is taken for the dashboard key.
  const headers = credential.split(".").length === 3
    ? { Authorization: "Bearer " + credential }
    : { "X-Dashboard-Key": credential };
  const reply = await fetch("/dashboard/tickets", { method: "POST", headers });
  if (!reply.ok) {
    const problem = await reply.json().catch(() => ({}));
    throw new Error(`${reply.status} ${problem.detail || ""}`);
  }
  return (await reply.json()).ticket;
}

async function watch(activityId) {
  if (source) source.close();
  clearTimeout(retry);
  if (watching !== activityId) remainingHistory = [];
  watching = activityId;
  let ticket;
  try {
    ticket = await fetchTicket();
  } catch (error) {
    setStatus("no ticket: " + error.message, true);
    return;
  }
  const url = `/dashboard/activities/${activityId}/events?ticket=${encodeURIComponent(ticket)}`;
  source = new EventSource(url);
  source.onopen = () => setStatus(`watching activity ${activityId}`);
  source.onmessage = (event) => show(JSON.parse(event.data));
  // A stream ends after a while, or the service restarts: open the next with a fresh ticket.
  source.onerror = () => {
    source.close();
    setStatus("reconnecting...", true);
    retry = setTimeout(() => watch(watching), 1000);
  };
}

function text(id, value, digits) {
  $(id).textContent = value === null || value === undefined
    ? "-" : Number(value).toLocaleString("en", { maximumFractionDigits: digits || 0 });
}

// Unix seconds as the UTC time of day, to the millisecond.
function clock(seconds) {
  return seconds === null || seconds === undefined
    ? "-" : new Date(seconds * 1000).toISOString().slice(11, 23);
}

// One frame tells one moment, snapshot.as_of: the answers up to it beside the stock then.
function show(snapshot) {
  const activity = snapshot.activity;
  const series = snapshot.series;
  const last = series[series.length - 1];
  const answers = Object.values(last.answers).reduce((a, b) => a + b, 0);
  $("as-of").textContent = `as of ${clock(snapshot.as_of).slice(0, 8)} UTC`;
  text("remaining", activity.remaining);
  text("stock", activity.stock);
  text("orders-per-second", last.answers.created);
  text("answers-per-second", answers);
  text("p50", last.p50_ms, 1);
  text("p99", last.p99_ms, 1);
  const sale = snapshot.sale;
  text("sold", activity.stock - activity.remaining + activity.released);
  text("created-total", sale.by_outcome.created);
  text("answers-total", sale.answers);
  text("peak-orders", sale.peak_orders_per_second);
  text("peak-answers", sale.peak_answers_per_second);
  text("peak-p99", sale.p99_at_peak_ms, 1);
  $("first-order").textContent = clock(sale.first_order);
  $("last-order").textContent = clock(sale.last_order);
  text("sell-out", sale.first_order_to_sold_out_seconds, 3);
  text("backlog", snapshot.outbox.backlog);
  text("lag", snapshot.outbox.oldest_seconds, 2);
  const orders = snapshot.orders;
  for (const state of ["created", "paid", "cancelled", "expired"]) {
    text("state-" + state, orders ? orders[state] : null);
  }
  text("state-returned", activity.released);
  text("orders-total", orders ? Object.values(orders).reduce((a, b) => a + b, 0) : null);
  if (!orders) setStatus("order_service does not answer", true);

  const now = snapshot.as_of; // every chart ends at the frame's moment
  remainingHistory.push([now, activity.remaining]);
  if (remainingHistory.length > HISTORY) remainingHistory.shift();
  draw($("chart-remaining"), [{ label: "remaining", color: "#1d2330", points: remainingHistory }],
    now, "units", Math.max(60, now - remainingHistory[0][0]));
  const outcomes = Object.keys(OUTCOME_COLORS).map((outcome) => ({
    label: outcome, color: OUTCOME_COLORS[outcome],
    points: series.map((p) => [p.t, p.answers[outcome]]),
  })).filter((line) => line.points.some(([, v]) => v > 0));
  draw($("chart-answers"), outcomes, now, "answers/s", 60);
  legend("legend-answers", outcomes);
  const latency = [
    { label: "p50", color: "#1b9e4b", points: series.map((p) => [p.t, p.p50_ms]) },
    { label: "p99", color: "#c0392b", points: series.map((p) => [p.t, p.p99_ms]) },
  ];
  draw($("chart-latency"), latency, now, "ms", 60);
  legend("legend-latency", latency);
  outboxHistory.push([now, snapshot.outbox.backlog, snapshot.outbox.oldest_seconds]);
  if (outboxHistory.length > 60) outboxHistory.shift();
  draw($("chart-outbox"), [{ label: "backlog", color: "#d9822b",
    points: outboxHistory.map((p) => [p[0], p[1]]) }], now, "orders", 60);
  draw($("chart-lag"), [{ label: "lag", color: "#2c3e50",
    points: outboxHistory.map((p) => [p[0], p[2]]) }], now, "seconds", 60);
}

function legend(id, lines) {
  const box = $(id);
  box.textContent = "";
  for (const line of lines) {
    const item = document.createElement("span");
    const swatch = document.createElement("i");
    swatch.style.background = line.color;
    item.append(swatch, line.label);
    box.appendChild(item);
  }
}

// Lines over the last `span` seconds up to `now`; x is seconds ago, y starts at 0.
function draw(canvas, lines, now, unit, span) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth, height = canvas.clientHeight;
  canvas.width = width * ratio;
  canvas.height = height * ratio;
  const g = canvas.getContext("2d");
  g.scale(ratio, ratio);
  g.clearRect(0, 0, width, height);
  const left = 56, right = 10, top = 8, bottom = 34;
  const plotW = width - left - right, plotH = height - top - bottom;
  let max = 0;
  for (const line of lines) for (const [, v] of line.points) if (v !== null) max = Math.max(max, v);
  max = niceCeiling(max || 1);
  g.font = "11px system-ui, sans-serif";
  g.fillStyle = "#5b6475";
  g.strokeStyle = "#e3e7ee";
  g.lineWidth = 1;
  for (let i = 0; i <= 4; i++) { // y grid and labels
    const y = top + plotH - (plotH * i) / 4;
    g.beginPath(); g.moveTo(left, y); g.lineTo(left + plotW, y); g.stroke();
    g.textAlign = "right"; g.textBaseline = "middle";
    g.fillText(formatTick((max * i) / 4), left - 6, y);
  }
  for (let i = 0; i <= 6; i++) { // x labels: seconds ago, "now" at the right end
    const x = left + (plotW * i) / 6;
    const ago = Math.round(span - (span * i) / 6);
    g.textAlign = "center"; g.textBaseline = "top";
    g.fillText(ago === 0 ? "now" : `-${ago}`, x, top + plotH + 4);
  }
  g.fillText("time (seconds ago)", left + plotW / 2, top + plotH + 18);
  g.save();
  g.translate(12, top + plotH / 2); g.rotate(-Math.PI / 2);
  g.textAlign = "center"; g.textBaseline = "middle";
  g.fillText(unit, 0, 0);
  g.restore();
  g.strokeStyle = "#8a93a3";
  g.beginPath(); g.moveTo(left, top); g.lineTo(left, top + plotH); g.lineTo(left + plotW, top + plotH);
  g.stroke();
  for (const line of lines) {
    g.strokeStyle = line.color; g.lineWidth = 2; g.beginPath();
    let drawing = false;
    for (const [t, v] of line.points) {
      if (v === null || t < now - span) { drawing = false; continue; }
      const x = left + plotW * (1 - (now - t) / span);
      const y = top + plotH - (plotH * v) / max;
      if (drawing) g.lineTo(x, y); else g.moveTo(x, y);
      drawing = true;
    }
    g.stroke();
  }
}

function niceCeiling(value) {
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

function formatTick(value) {
  return value >= 1000 ? `${(value / 1000).toLocaleString("en")}k`
    : Number(value.toFixed(2)).toLocaleString("en");
}

$("watch").addEventListener("click", () => {
  const id = $("activity").value;
  if (id) watch(id);
});
window.addEventListener("pagehide", () => { if (source) source.close(); });
loadActivities();
setInterval(loadActivities, ACTIVITIES_EVERY_MS);
