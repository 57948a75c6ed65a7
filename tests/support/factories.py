"""Shared data factories: users, tokens and activities made through the real HTTP API."""

from __future__ import annotations

import asyncio
import itertools
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from testkit.stack import ADMIN, Stack

_counter = itertools.count()
# Strong enough for the password policy (user_service/policy.py).
PASSWORD = "gravel-Mint-4417"


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def window(start_in: float = -60, length: float = 3600) -> dict[str, str]:
    now = datetime.now(UTC)
    starts = now + timedelta(seconds=start_in)
    return {"starts_at": iso(starts), "ends_at": iso(starts + timedelta(seconds=length))}


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict

    @property
    def code(self) -> str | None:
        return self.body.get("code") if isinstance(self.body, dict) else None


@dataclass
class Account:
    id: int
    username: str
    token: str


class Api:
    def __init__(self, stack: Stack, session: aiohttp.ClientSession):
        self.stack, self.session = stack, session
        self._admin_token: str | None = None

    async def call(
        self,
        method: str,
        service: str,
        path: str,
        token: str | None = None,
        json: Any = None,
        data: bytes | str | None = None,
        headers: dict | None = None,
    ) -> Reply:
        headers = dict(headers or {})
        if data is not None and not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/json"  # raw bytes, sent as JSON
        if token:
            headers["Authorization"] = f"Bearer {token}"
        async with self.session.request(
            method, self.stack.url(service) + path, json=json, data=data, headers=headers
        ) as response:
            raw = await response.read()
            try:
                body = await response.json(content_type=None) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
            return Reply(response.status, body, dict(response.headers))

    async def register(self, username: str | None = None, password: str = PASSWORD) -> Reply:
        username = username or f"u{next(_counter)}_{secrets.token_hex(3)}"
        return await self.call(
            "POST", "user_service", "/users", json={"username": username, "password": password}
        )

    async def login(self, username: str, password: str = PASSWORD) -> str:
        reply = await self.call(
            "POST", "user_service", "/tokens", json={"username": username, "password": password}
        )
        assert reply.status == 200, reply
        return reply.body["access_token"]

    async def new_user(self) -> Account:
        reply = await self.register()
        assert reply.status == 201, reply
        token = await self.login(reply.body["username"])
        return Account(reply.body["id"], reply.body["username"], token)

    async def new_users(self, count: int, concurrency: int = 32) -> list[Account]:
        gate = asyncio.Semaphore(concurrency)

        async def one() -> Account:
            async with gate:
                return await self.new_user()

        return list(await asyncio.gather(*(one() for _ in range(count))))

    async def admin_token(self) -> str:
        if self._admin_token is None:
            self._admin_token = await self.login(*ADMIN)
        return self._admin_token

    async def create_activity(self, **fields: Any) -> dict:
        body = {
            "name": "Flash sale",
            "product_name": "Keyboard",
            "price": "19.90",
            "stock": 10,
            **window(),
            **fields,
        }
        reply = await self.call(
            "POST", "activity_service", "/activities", token=await self.admin_token(), json=body
        )
        assert reply.status == 201, reply
        return reply.body

    async def seckill(self, activity_id: int, token: str, solution: str | None = None) -> Reply:
        """solution: a solved challenge (testkit/altcha_solver.py), sent as X-Altcha."""
        headers = {"X-Altcha": solution} if solution is not None else None
        return await self.call(
            "POST",
            "activity_service",
            f"/activities/{activity_id}/seckill",
            token=token,
            headers=headers,
        )
