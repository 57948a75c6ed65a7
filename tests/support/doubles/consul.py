"""ConsulDouble: a test double for the part of Consul's HTTP API the services use.

It speaks the real wire format on a loopback port, in a thread of its own:

    PUT /v1/agent/service/register            (service with an HTTP check)
    PUT /v1/agent/service/deregister/<id>
    GET /v1/agent/services
    GET /v1/catalog/service/<name>
    GET /v1/health/service/<name>[?passing][&index=N&wait=10s]   (blocking, X-Consul-Index)

and really performs each registered HTTP check against the service at the
registered interval and timeout, marking it passing/critical, and reaps a
service that stays critical for its DeregisterCriticalServiceAfter. There is
one agent and one node; anything else answers 404.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import urllib.request
from collections import Counter
from typing import Any

import aiohttp
from aiohttp import web

from testkit.stack import SERVICES, free_port

NODE = {
    "ID": "0b1d0b1d-0000-0000-0000-000000000001",
    "Node": "consul-double",
    "Address": "127.0.0.1",
    "Datacenter": "dc1",
}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str | int | float | None, default: float = 0.0) -> float:
    """Go duration ('1500ms', '10s', '1m30s') to seconds; a bare number means seconds."""
    if text is None or text == "":
        return default
    if isinstance(text, (int, float)):
        return float(text)
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"bad duration {text!r}")
    return sum(float(n) * _UNIT[u] for n, u in parts)


def _lower(mapping: dict) -> dict:
    """Consul decodes field names case-insensitively."""
    return {key.lower(): value for key, value in mapping.items()}


class _Check:
    def __init__(self, service: dict, definition: dict):
        self.service = service
        self.http = definition["http"]
        self.interval = parse_duration(definition.get("interval"), 10.0)
        self.timeout = parse_duration(definition.get("timeout"), 10.0)
        self.deregister_after = parse_duration(
            definition.get("deregistercriticalserviceafter"), 0.0
        )
        self.raw = definition
        self.status, self.output = "critical", ""
        self.critical_since = time.monotonic()
        self.runs = 0
        self.task: asyncio.Task | None = None

    def view(self) -> dict:
        return {
            "Node": NODE["Node"],
            "CheckID": f"service:{self.service['ID']}",
            "Name": f"Service '{self.service['Service']}' check",
            "Status": self.status,
            "Output": self.output,
            "ServiceID": self.service["ID"],
            "ServiceName": self.service["Service"],
            "Type": "http",
            "Definition": {
                "HTTP": self.http,
                "Interval": self.raw.get("interval"),
                "Timeout": self.raw.get("timeout"),
                "DeregisterCriticalServiceAfter": self.raw.get("deregistercriticalserviceafter"),
            },
        }


class ConsulDouble:
    """Start with .start(), stop with .stop(); a stopped double is an agent that is down."""

    def __init__(self, port: int | None = None):
        self.host, self.port = "127.0.0.1", port or free_port()
        self.register_calls: Counter[str] = Counter()
        self.deregister_calls: Counter[str] = Counter()
        self.check_runs: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()  # "GET /v1/health/service/x" -> how many
        self._services: dict[str, dict] = {}
        self._checks: dict[str, _Check] = {}
        self._raft = 1
        self._service_index: dict[str, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> ConsulDouble:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the Consul double did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(10)
            self._loop = None

    def _run(self, ready: threading.Event) -> None:
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self._serve(ready))
        self._loop.close()

    async def _serve(self, ready: threading.Event) -> None:
        self._stopping = asyncio.Event()
        self._changed = asyncio.Condition()
        self._session = aiohttp.ClientSession()
        app = web.Application(middlewares=[self._count])
        app.router.add_put("/v1/agent/service/register", self._register)
        app.router.add_put("/v1/agent/service/deregister/{id}", self._deregister)
        app.router.add_get("/v1/agent/services", self._agent_services)
        app.router.add_get("/v1/catalog/service/{name}", self._catalog_service)
        app.router.add_get("/v1/health/service/{name}", self._health_service)
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, self.host, self.port, reuse_address=True).start()
        ready.set()
        await self._stopping.wait()
        for check in self._checks.values():
            check.task.cancel()
        async with self._changed:  # answer the blocking queries now
            self._changed.notify_all()
        await runner.cleanup()
        await self._session.close()

    # -- state ----------------------------------------------------------------------------------

    async def _bump(self, name: str) -> None:
        self._raft += 1
        self._service_index[name] = self._raft
        async with self._changed:
            self._changed.notify_all()

    def _index(self, name: str) -> int:
        return self._service_index.get(name, self._raft)

    async def _remove(self, service_id: str) -> None:
        service = self._services.pop(service_id)
        check = self._checks.pop(service_id, None)
        if check is not None and check.task is not asyncio.current_task():
            check.task.cancel()
        await self._bump(service["Service"])

    async def _run_check(self, check: _Check) -> None:
        while True:
            try:
                async with self._session.get(
                    check.http, timeout=aiohttp.ClientTimeout(total=check.timeout)
                ) as response:
                    body = (await response.text())[:200]
                    status = (
                        "passing"
                        if 200 <= response.status < 300
                        else ("warning" if response.status == 429 else "critical")
                    )
                    output = f"HTTP GET {check.http}: {response.status} Output: {body}"
            except (TimeoutError, aiohttp.ClientError) as exc:
                status, output = "critical", f"Get {check.http}: {exc!r}"
            check.runs += 1
            self.check_runs[check.service["ID"]] += 1
            check.output = output
            if status != check.status:
                check.status = status
                check.critical_since = time.monotonic()
                await self._bump(check.service["Service"])
            if (
                status == "critical"
                and check.deregister_after
                and time.monotonic() - check.critical_since >= check.deregister_after
            ):
                await self._remove(check.service["ID"])
                return
            await asyncio.sleep(check.interval)

    # -- handlers -------------------------------------------------------------------------------

    @web.middleware
    async def _count(self, request: web.Request, handler) -> web.StreamResponse:
        self.requests[f"{request.method} {request.path}"] += 1
        return await handler(request)

    def _answer(self, body: Any, index: int | None = None, status: int = 200) -> web.Response:
        headers = {"X-Consul-Knownleader": "true", "X-Consul-Lastcontact": "0"}
        if index is not None:
            headers["X-Consul-Index"] = str(index)
        if isinstance(body, str):
            return web.Response(text=body, status=status, headers=headers)
        return web.json_response(body, status=status, headers=headers)

    async def _register(self, request: web.Request) -> web.Response:
        try:
            body = _lower(await request.json())
            name = body["name"]
            checks = [_lower(c) for c in body.get("checks") or []]
            if body.get("check"):
                checks.append(_lower(body["check"]))
            service = {
                "ID": body.get("id") or name,
                "Service": name,
                "Tags": body.get("tags") or [],
                "Address": body.get("address") or "",
                "Port": int(body.get("port") or 0),
                "Meta": body.get("meta") or {},
            }
            for check in checks:
                for key in ("interval", "timeout", "deregistercriticalserviceafter"):
                    parse_duration(check.get(key))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return self._answer(f"Request decode failed: {exc!r}", status=400)
        if len(checks) > 1 or (checks and "http" not in checks[0]):
            return self._answer("the Consul double supports one HTTP check", status=400)
        self.register_calls[service["ID"]] += 1
        old = self._checks.pop(service["ID"], None)
        if old is not None:
            old.task.cancel()
        self._services[service["ID"]] = service
        if checks:
            check = _Check(service, checks[0])
            if old is not None and old.raw == check.raw:
                check.status, check.critical_since = old.status, old.critical_since
            check.task = asyncio.create_task(self._run_check(check))
            self._checks[service["ID"]] = check
        await self._bump(name)
        return self._answer("")

    async def _deregister(self, request: web.Request) -> web.Response:
        service_id = request.match_info["id"]
        self.deregister_calls[service_id] += 1
        if service_id not in self._services:
            return self._answer(f'Unknown service ID "{service_id}"', status=404)
        await self._remove(service_id)
        return self._answer("")

    async def _agent_services(self, request: web.Request) -> web.Response:
        return self._answer(dict(self._services))

    async def _catalog_service(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        rows = [
            {
                "Node": NODE["Node"],
                "Address": NODE["Address"],
                "ServiceID": s["ID"],
                "ServiceName": s["Service"],
                "ServiceTags": s["Tags"],
                "ServiceAddress": s["Address"],
                "ServicePort": s["Port"],
            }
            for s in self._services.values()
            if s["Service"] == name
        ]
        return self._answer(rows, self._index(name))

    async def _health_service(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        try:
            index = int(request.query.get("index", "0"))
            wait = min(parse_duration(request.query.get("wait"), 300.0), 600.0)
        except ValueError as exc:
            return self._answer(f"bad query: {exc}", status=400)
        if index > 0:
            deadline = time.monotonic() + wait
            async with self._changed:
                while (
                    self._index(name) <= index
                    and not self._stopping.is_set()
                    and (left := deadline - time.monotonic()) > 0
                ):
                    try:
                        await asyncio.wait_for(self._changed.wait(), left)
                    except TimeoutError:
                        break
        passing_only = "passing" in request.query
        entries = []
        for service in self._services.values():
            if service["Service"] != name:
                continue
            check = self._checks.get(service["ID"])
            checks = [check.view()] if check else []
            if passing_only and any(c["Status"] != "passing" for c in checks):
                continue
            entries.append({"Node": NODE, "Service": service, "Checks": checks})
        return self._answer(entries, self._index(name))

    # -- for tests ------------------------------------------------------------------------------

    def get(self, path: str) -> Any:
        """GET a path of this double's HTTP API, decoded."""
        with urllib.request.urlopen(self.url + path, timeout=5) as response:
            return json.loads(response.read())

    def passing(self, name: str) -> list[dict]:
        """The passing instances of a service, as /v1/health/service/<name>?passing lists them."""
        return self.get(f"/v1/health/service/{name}?passing")


# Static peer URLs that lead nowhere: whatever reaches a peer found it through Consul.
DEAD = "http://127.0.0.1:9"


def consul_env(double: ConsulDouble, **extra: str) -> dict[str, str]:
    return {
        "CONSUL_HOST": double.host,
        "CONSUL_PORT": str(double.port),
        "CONSUL_CHECK_INTERVAL": "0.5",
        "CONSUL_CHECK_TIMEOUT": "1",
        **{f"{name.upper()}_URL": DEAD for name in SERVICES},
        **extra,
    }
