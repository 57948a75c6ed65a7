// The open and upcoming sales: a card each, its countdown, and the buy button.
import { call, LostConnection } from "./api.js";
import { left, now } from "./clock.js";
import { mountWidget, resetWidget, solve } from "./challenge.js";
import { authed, token } from "./session.js";
import { LOST, refusal, time, wait } from "./words.js";

const cards = new Map(); // activity id -> {sale, element}
let bought = () => {};

export function onBought(listener) {
  bought = listener;
}

export function sale(id) {
  return cards.get(id)?.sale;
}

function say(element, text, tone = "") {
  const answer = element.querySelector(".answer");
  answer.textContent = text;
  answer.className = `answer ${tone}`;
}

function card(sale) {
  let entry = cards.get(sale.id);
  if (!entry) {
    const element = document.getElementById("sale-card").content.firstElementChild.cloneNode(true);
    element.dataset.id = sale.id;
    element.querySelector(".buy").addEventListener("click", () => buy(sale.id));
    entry = { element, sale, waitUntil: 0, busy: false };
    cards.set(sale.id, entry);
  }
  entry.sale = sale;
  const { element } = entry;
  if (sale.challenge && !element.querySelector("altcha-widget")) mountWidget(element, sale.id);
  element.querySelector(".product").textContent = sale.product_name;
  element.querySelector(".name").textContent = sale.name;
  element.querySelector(".price").textContent = sale.price;
  element.querySelector(".remaining").textContent =
    sale.remaining > 0 ? `${sale.remaining} of ${sale.stock}` : "Sold out";
  element.querySelector(".starts").textContent = time(sale.starts_at);
  element.querySelector(".ends").textContent = time(sale.ends_at);
  return entry;
}

// The list from GET /activities: every sale that has not ended, the soonest first.
export async function refreshSales() {
  const reply = await call("activity", "/activities?limit=100");
  if (reply.status !== 200) return reply;
  const open = reply.body.items
    .filter((sale) => Date.parse(sale.ends_at) > now())
    .sort((a, b) => Date.parse(a.starts_at) - Date.parse(b.starts_at));
  const list = document.getElementById("sale-list");
  const shown = new Set(open.map((sale) => sale.id));
  for (const [id, entry] of cards) {
    if (!shown.has(id)) {
      entry.element.remove();
      cards.delete(id);
    }
  }
  open.forEach((sale) => list.append(card(sale).element));
  tick();
  return reply;
}

// Each card's countdown and button, from the server's clock: called several times a second,
// so the button is live at the start without a reload.
export function tick() {
  const at = now();
  for (const entry of cards.values()) {
    const { sale, element } = entry;
    const starts = Date.parse(sale.starts_at);
    const ends = Date.parse(sale.ends_at);
    const countdown = element.querySelector(".countdown");
    const button = element.querySelector(".buy");
    let open = false;
    if (at < starts) countdown.textContent = `Starts in ${left(starts)}`;
    else if (at < ends) {
      countdown.textContent = `On sale: ends in ${left(ends)}`;
      open = true;
    } else countdown.textContent = "Ended";
    const waiting = entry.waitUntil > at;
    if (!waiting && entry.waitUntil) {
      entry.waitUntil = 0;
      say(element, "You can try again now.");
    }
    button.disabled = !open || waiting || entry.busy;
    // The wait counts down on the button; the answer (read out once) says how long it is.
    if (waiting) button.textContent = `Try again in ${left(entry.waitUntil)}`;
    else button.textContent = open ? "Buy now" : "Buy";
    button.setAttribute("aria-label", `${button.textContent}: ${sale.product_name}`);
  }
}

function holdOff(entry, reply) {
  entry.waitUntil = now() + (reply.retryAfter ?? 1) * 1000;
}

async function buy(id) {
  const entry = cards.get(id);
  const { element, sale } = entry;
  if (!token()) {
    say(element, "Log in first, then buy.", "bad");
    document.getElementById("username").focus();
    return;
  }
  entry.busy = true;
  tick();
  try {
    const headers = {};
    if (sale.challenge) {
      say(element, "Checking that you are a person…");
      const solved = await solve(element);
      if (solved.reply) {
        answer(entry, solved.reply);
        return;
      }
      headers["X-Altcha"] = solved.payload;
    }
    say(element, "Buying…");
    const reply = await authed("activity", `/activities/${id}/seckill`, {
      method: "POST",
      headers,
    });
    answer(entry, reply);
  } catch (error) {
    if (!(error instanceof LostConnection)) throw error;
    say(element, LOST, "bad");
  } finally {
    entry.busy = false;
    resetWidget(element);
    tick();
  }
}

function answer(entry, reply) {
  const { element } = entry;
  if (reply.status === 201) {
    say(element, `Your order ${reply.body.order_no} is placed. Pay it before ${time(reply.body.expires_at)}.`, "good");
    bought();
  } else if (reply.status === 200) {
    say(element, `Already yours: order ${reply.body.order_no}. See My orders.`, "good");
    bought();
  } else if (wait(reply)) {
    holdOff(entry, reply);
    say(element, wait(reply), "bad");
  } else say(element, refusal(reply), "bad");
}
