// The shop page: wires the account form, the sales and "my orders" together.
import { LostConnection, services } from "./api.js";
import { now, syncClock } from "./clock.js";
import * as orders from "./orders.js";
import * as sales from "./sales.js";
import * as session from "./session.js";
import { LOST, refusal, wait } from "./words.js";

const REFRESH_MS = 5000; // how often the lists are read again
const TICK_MS = 250; // how often countdowns and buttons are updated

const $ = (id) => document.getElementById(id);

function say(id, text, tone = "") {
  $(id).textContent = text;
  $(id).className = `answer ${tone}`;
}

// Reads one list; a refusal or a lost connection is told, and a wait asked for is kept.
async function refresh(read, answerId) {
  try {
    const reply = await read();
    if (reply.status === 200) return 0;
    say(answerId, wait(reply) ?? refusal(reply), "bad");
    return (reply.retryAfter ?? 0) * 1000;
  } catch (error) {
    if (!(error instanceof LostConnection)) throw error;
    say(answerId, LOST, "bad");
    return 0;
  }
}

async function refreshAll() {
  const waits = [await refresh(sales.refreshSales, "sales-answer")];
  if (session.token()) waits.push(await refresh(orders.refreshOrders, "orders-answer"));
  return Math.max(...waits);
}

// The lists are read every few seconds (longer when the server asks for a wait): that is
// how units given back and expired orders show up. A buy is never retried on its own.
async function keepFresh() {
  const waitMs = await refreshAll().catch(() => 0);
  setTimeout(keepFresh, Math.max(REFRESH_MS, waitMs));
}

function showSession() {
  const name = session.username();
  $("login-form").hidden = Boolean(name);
  $("signed-in").hidden = !name;
  $("who").textContent = name ?? "";
  if (!name) {
    orders.clearOrders();
    say("orders-answer", "Log in to see your orders.");
  }
}

async function account(action) {
  const name = $("username").value.trim();
  const password = $("password").value;
  if (!$("login-form").reportValidity()) return;
  say("account-answer", action === "register" ? "Registering…" : "Logging in…");
  try {
    if (action === "register") {
      const made = await session.register(name, password);
      if (made.status !== 201) {
        say("account-answer", refusal(made), "bad");
        return;
      }
    }
    const reply = await session.login(name, password);
    if (reply.status !== 200) {
      say("account-answer", refusal(reply), "bad");
      return;
    }
    $("password").value = "";
    say("account-answer", action === "register" ? "Registered and logged in." : "Logged in.");
    await refreshAll();
    $("logout").focus();
  } catch (error) {
    if (!(error instanceof LostConnection)) throw error;
    say("account-answer", LOST, "bad");
  }
}

async function start() {
  const config = await fetch("/shop/config", { cache: "no-store" }).then((r) => r.json());
  services.activity = window.location.origin;
  services.user = config.user_service;
  services.order = config.order_service;
  await syncClock();
  const offset = Math.round((now() - Date.now()) / 1000);
  $("clock").textContent =
    Math.abs(offset) < 1
      ? "Times are the shop's clock."
      : `Times are the shop's clock (this device's clock is ${Math.abs(offset)} s ${offset > 0 ? "slow" : "fast"}).`;
  session.onChange(showSession);
  sales.onBought(() => refreshAll());
  orders.onChange(() => refresh(sales.refreshSales, "sales-answer"));
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    account("login");
  });
  $("register").addEventListener("click", () => account("register"));
  $("logout").addEventListener("click", async () => {
    await session.logout().catch(() => {});
    say("account-answer", "Logged out.");
    $("username").focus();
  });
  if (await session.refresh().catch(() => false)) showSession();
  setInterval(() => {
    sales.tick();
    orders.tick();
  }, TICK_MS);
  keepFresh();
}

start().catch(() => say("sales-answer", LOST, "bad"));
