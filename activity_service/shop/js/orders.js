// "My orders": each order's status, the pay deadline counting down, pay and cancel.
import { LostConnection } from "./api.js";
import { left, now } from "./clock.js";
import { sale } from "./sales.js";
import { authed } from "./session.js";
import { LOST, refusal, STATUS, wait } from "./words.js";

const cards = new Map(); // order_no -> {order, element}
let changed = () => {};

export function onChange(listener) {
  changed = listener;
}

function say(element, text, tone = "") {
  const answer = element.querySelector(".answer");
  answer.textContent = text;
  answer.className = `answer ${tone}`;
}

function card(order) {
  let entry = cards.get(order.order_no);
  if (!entry) {
    const element = document.getElementById("order-card").content.firstElementChild.cloneNode(true);
    element.dataset.orderNo = order.order_no;
    entry = { element, order };
    element.querySelector(".pay").addEventListener("click", () => act(entry, "pay"));
    element.querySelector(".cancel").addEventListener("click", () => act(entry, "cancel"));
    cards.set(order.order_no, entry);
  }
  entry.order = order;
  const { element } = entry;
  const product = sale(order.activity_id)?.product_name ?? `Sale ${order.activity_id}`;
  element.querySelector(".product").textContent = product;
  element.querySelector(".order-no").textContent = order.order_no;
  element.querySelector(".amount").textContent = order.amount;
  element.querySelector(".status").textContent = STATUS[order.status] ?? order.status;
  element.dataset.status = order.status;
  element.querySelector(".actions").hidden = order.status !== "created";
  for (const name of ["pay", "cancel"]) {
    element.querySelector(`.${name}`).setAttribute("aria-label", `${name === "pay" ? "Pay" : "Cancel"} order ${order.order_no}`);
  }
  return entry;
}

export function clearOrders() {
  cards.clear();
  document.getElementById("order-list").replaceChildren();
}

// GET /orders of order_service: this shopper's orders, newest first.
export async function refreshOrders() {
  const reply = await authed("order", "/orders?limit=50");
  if (reply.status !== 200) return reply;
  const list = document.getElementById("order-list");
  list.replaceChildren(...reply.body.items.map((order) => card(order).element));
  document.getElementById("orders-answer").textContent = reply.body.items.length
    ? ""
    : "No orders yet.";
  tick();
  return reply;
}

// Each unpaid order's deadline, from the server's clock.
export function tick() {
  for (const { order, element } of cards.values()) {
    const deadline = element.querySelector(".deadline");
    const due = Date.parse(order.expires_at);
    if (order.status !== "created") deadline.textContent = "";
    else if (due > now()) deadline.textContent = `Pay within ${left(due)}`;
    else {
      deadline.textContent = "The time to pay is over: the order expires.";
      element.querySelector(".actions").hidden = true;
    }
  }
}

async function act(entry, action) {
  const { element, order } = entry;
  const buttons = element.querySelectorAll(".actions button");
  buttons.forEach((button) => {
    button.disabled = true;
  });
  say(element, action === "pay" ? "Paying…" : "Cancelling…");
  try {
    const reply = await authed("order", `/orders/${order.order_no}/${action}`, { method: "POST" });
    if (reply.status === 200) {
      card(reply.body);
      say(element, action === "pay" ? "Paid. Thank you!" : "Cancelled: the unit is back on sale.", "good");
      changed();
    } else say(element, wait(reply) ?? refusal(reply), "bad");
  } catch (error) {
    if (!(error instanceof LostConnection)) throw error;
    say(element, LOST, "bad");
  } finally {
    buttons.forEach((button) => {
      button.disabled = false;
    });
    tick();
  }
}
