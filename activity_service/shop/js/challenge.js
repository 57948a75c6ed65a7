// The anti-bot challenge, solved by the ALTCHA widget (npm altcha, vendored) as part of a buy.
import { LostConnection, services } from "./api.js";
import { authed } from "./session.js";

const widgets = new WeakMap(); // widget -> {reply, lost, payload}

// The widget fetches the challenge itself, through this: it carries the shopper's token and
// keeps the answer, so that a refusal (429 and its wait, a lost connection) can be told.
function fetcher(state) {
  return async (url) => {
    state.reply = null;
    state.lost = false;
    try {
      state.reply = await authed("activity", String(url).slice(services.activity.length));
    } catch (error) {
      state.lost = error instanceof LostConnection;
      throw error;
    }
    return new Response(JSON.stringify(state.reply.body), {
      status: state.reply.status,
      headers: { "Content-Type": "application/json" },
    });
  };
}

// The card's widget, in its default configuration but for where the challenge comes from.
export function mountWidget(element, activityId) {
  const widget = document.createElement("altcha-widget");
  widget.setAttribute("name", `altcha-${activityId}`);
  const state = { reply: null, lost: false, payload: null };
  widgets.set(widget, state);
  widget.addEventListener("verified", (event) => {
    state.payload = event.detail.payload;
  });
  state.config = {
    challenge: `${services.activity}/activities/${activityId}/challenge`,
    fetch: fetcher(state),
  };
  element.querySelector(".check").append(widget);
  configureWhenReady(widget, state.config);
  return widget;
}

// The widget has its methods once it is on the page and has started: configured then, so
// that ticking its box before buying works too.
function configureWhenReady(widget, config, frames = 600) {
  if (typeof widget.configure === "function") widget.configure(config);
  else if (frames > 0) requestAnimationFrame(() => configureWhenReady(widget, config, frames - 1));
}

// {payload} to send once solved (one the shopper solved already, by ticking the box, or a
// fresh one now), or {reply}: why there is none (the challenge's 429, 401, ...).
export async function solve(element) {
  await customElements.whenDefined("altcha-widget");
  const widget = element.querySelector("altcha-widget");
  const state = widgets.get(widget);
  if (!state.payload) {
    await widget.configure(state.config);
    const result = await widget.verify().catch(() => null);
    if (result?.payload) state.payload = result.payload;
  }
  const { payload } = state;
  state.payload = null; // each solution buys once
  if (payload) return { payload };
  if (state.lost) throw new LostConnection("lost connection");
  return { reply: state.reply ?? { status: 0, code: "challenge_failed" } };
}

export function resetWidget(element) {
  const widget = element.querySelector("altcha-widget");
  if (widget) {
    widgets.get(widget).payload = null;
    widget.reset();
  }
}
