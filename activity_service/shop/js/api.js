// Calls to the services: one fetch each, never retried here; answers as {status, code, body}.

export class LostConnection extends Error {}

export const services = { user: "", activity: "", order: "" };

// Seconds from a Retry-After header (delay-seconds form), or null.
function retryAfter(response) {
  const value = Number.parseInt(response.headers.get("Retry-After") || "", 10);
  return Number.isFinite(value) && value >= 0 ? value : null;
}

export async function call(service, path, { method = "GET", token, json, headers } = {}) {
  const init = { method, headers: { ...headers } };
  if (token) init.headers.Authorization = `Bearer ${token}`;
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(services[service] + path, init);
  } catch {
    throw new LostConnection("lost connection");
  }
  let body = null;
  try {
    body = response.status === 204 ? null : await response.json();
  } catch {
    body = null;
  }
  return {
    status: response.status,
    code: body && typeof body.code === "string" ? body.code : null,
    body,
    retryAfter: retryAfter(response),
  };
}
