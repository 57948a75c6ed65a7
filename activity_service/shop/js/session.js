// The shopper's session. The access token lives in memory only; the refresh token in
// sessionStorage, so a reload of this tab stays logged in, and closing the tab forgets it.
// Never localStorage: that is kept on disk and shared with every tab of the origin, for
// as long as nobody clears it (docs/shop.md).
import { call } from "./api.js";

const REFRESH = "seckill.refresh";
const NAME = "seckill.username";
let access = null;
let timer = null;
const listeners = [];

export function onChange(listener) {
  listeners.push(listener);
}

export function username() {
  return access ? sessionStorage.getItem(NAME) : null;
}

function keep(tokens, name) {
  access = tokens.access_token;
  sessionStorage.setItem(REFRESH, tokens.refresh_token);
  if (name) sessionStorage.setItem(NAME, name);
  clearTimeout(timer);
  // Renewed a minute before the access token runs out (at 80% of a short one).
  const renewIn = Math.max(5, Math.min(tokens.expires_in - 60, tokens.expires_in * 0.8));
  timer = setTimeout(() => refresh().catch(() => {}), renewIn * 1000);
  listeners.forEach((listener) => listener());
}

function forget() {
  access = null;
  clearTimeout(timer);
  sessionStorage.removeItem(REFRESH);
  sessionStorage.removeItem(NAME);
  listeners.forEach((listener) => listener());
}

export async function register(name, password) {
  return call("user", "/users", { method: "POST", json: { username: name, password } });
}

export async function login(name, password) {
  const reply = await call("user", "/tokens", {
    method: "POST",
    json: { username: name, password },
  });
  if (reply.status === 200) keep(reply.body, name);
  return reply;
}

// The next pair of tokens; the session ends if the refresh token is refused.
export async function refresh() {
  const token = sessionStorage.getItem(REFRESH);
  if (!token) return false;
  const reply = await call("user", "/tokens/refresh", {
    method: "POST",
    json: { refresh_token: token },
  });
  if (reply.status === 200) {
    keep(reply.body);
    return true;
  }
  if (reply.status === 400 || reply.status === 401 || reply.status === 422) forget();
  return false;
}

export async function logout() {
  const token = sessionStorage.getItem(REFRESH);
  forget();
  if (token) {
    await call("user", "/tokens/revoke", { method: "POST", json: { refresh_token: token } });
  }
}

// A call with the access token; on a 401, one refresh and one more try, never more.
export async function authed(service, path, options = {}) {
  const reply = await call(service, path, { ...options, token: access });
  if (reply.status !== 401 || !(await refresh())) return reply;
  return call(service, path, { ...options, token: access });
}

export function token() {
  return access;
}
