// The shop's clock. Countdowns run on the server's time, not the device's: the offset is
// taken from three round trips to GET /shop/config, keeping the one that took least time
// and assuming the server read its clock half way through it.
import { services } from "./api.js";

let offset = 0;

export async function syncClock() {
  let best = null;
  for (let i = 0; i < 3; i += 1) {
    const sent = Date.now();
    const response = await fetch(`${services.activity}/shop/config`, { cache: "no-store" });
    const received = Date.now();
    const { now_ms: server } = await response.json();
    const trip = received - sent;
    if (best === null || trip < best.trip) best = { trip, offset: server - (sent + received) / 2 };
  }
  offset = best.offset;
  return best;
}

export function now() {
  return Date.now() + offset;
}

// "1:05:09", "4:09", "0:03": what is left until `at` (ms), never below zero.
export function left(at) {
  const seconds = Math.max(0, Math.ceil((at - now()) / 1000));
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = String(seconds % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}
