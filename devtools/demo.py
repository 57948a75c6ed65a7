"""`make demo`: the first seckill, step by step, against a running `make run`.

Registers a new user, logs in, creates an activity open from now (as the admin
`make run` was started with), buys, buys again, lists the orders: each step
printed with its status code. Exits non-zero when a step answers otherwise
than expected, or when `make run` is not up.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

from common.config import SERVICE_PORTS
from devtools.local import LOCAL, ROOT, read_env_file


class StepFailed(Exception):
    pass


def environment() -> dict[str, str]:
    """What `make run` gives the services: its generated secrets < .env < this environment."""
    env = read_env_file(LOCAL / "secrets.env")
    for layer in (read_env_file(ROOT / ".env"), os.environ):
        env.update({key: value for key, value in layer.items() if value})
    return env


def service_urls(env: dict[str, str]) -> dict[str, str]:
    return {
        name: env.get(f"{name.upper()}_URL")
        or f"http://127.0.0.1:{env.get(f'{name.upper()}_PORT') or port}"
        for name, port in SERVICE_PORTS.items()
    }


def call(
    step: str,
    method: str,
    url: str,
    expect: int,
    body: dict | None = None,
    token: str | None = None,
) -> Any:
    """One request, printed as `status  METHOD url  step`, then its body; returns the body."""
    request = urllib.request.Request(url, method=method)
    data = None if body is None else json.dumps(body).encode()
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, data, timeout=10) as reply:
            status, raw = reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    print(f"{status}  {method:<4} {url}  {step}")
    answer = json.loads(raw) if raw else None
    shown = (
        {k: v for k, v in answer.items() if k != "access_token"}
        if isinstance(answer, dict)
        else answer
    )
    print(f"     {json.dumps(shown)}")
    if status != expect:
        raise StepFailed(f"{step}: expected {expect}, got {status}")
    return answer


def demo(urls: dict[str, str], admin: tuple[str, str]) -> None:
    users, activities, orders = (
        urls["user_service"],
        urls["activity_service"],
        urls["order_service"],
    )
    login = {"username": "demo_" + secrets.token_hex(3), "password": "demo-password-42"}
    call(f"register {login['username']}", "POST", f"{users}/users", 201, login)
    user = call("log in", "POST", f"{users}/tokens", 200, login)["access_token"]
    credentials = {"username": admin[0], "password": admin[1]}
    admin_token = call(f"log in as admin {admin[0]}", "POST", f"{users}/tokens", 200, credentials)
    now = datetime.now(UTC).replace(microsecond=0)
    activity = {
        "name": "Demo flash sale",
        "product_name": "Mechanical keyboard",
        "price": "19.90",
        "stock": 100,
        "starts_at": now.isoformat().replace("+00:00", "Z"),
        "ends_at": (now + timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
    }
    created = call(
        "create an activity open from now for an hour",
        "POST",
        f"{activities}/activities",
        201,
        activity,
        admin_token["access_token"],
    )
    seckill = f"{activities}/activities/{created['id']}/seckill"
    call("buy one", "POST", seckill, 201, token=user)
    call("buy again: the same order, not a second one", "POST", seckill, 200, token=user)
    call("list my orders", "GET", f"{orders}/orders", 200, token=user)
    print(f"The same in a browser: the shop at {activities}/shop (docs/shop.md)")


def main() -> int:
    env = environment()
    urls = service_urls(env)
    for name, url in urls.items():
        try:
            urllib.request.urlopen(f"{url}/health", timeout=3).close()
        except (urllib.error.URLError, OSError):
            print(
                f"make demo: {name} does not answer at {url}: start `make run` in another shell",
                file=sys.stderr,
            )
            return 1
    admin = (env.get("ADMIN_USERNAME", ""), env.get("ADMIN_PASSWORD", ""))
    if not all(admin):
        print("make demo: no admin login: set ADMIN_USERNAME/ADMIN_PASSWORD", file=sys.stderr)
        return 1
    try:
        demo(urls, admin)
    except StepFailed as exc:
        print(f"make demo: {exc}", file=sys.stderr)
        return 1
    print("make demo: done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
