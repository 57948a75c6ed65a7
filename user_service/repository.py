"""All of user_service's SQL."""

from __future__ import annotations

import pymysql

from common.db import DUPLICATE_KEY, Database, error_code
from common.formats import utcnow


class UsernameExists(Exception):
    pass


async def insert_user(db: Database, username: str, password_hash: str, is_admin: bool) -> dict:
    created_at = utcnow()

    async def work(cur) -> int:
        await cur.execute(
            "INSERT INTO users (username, password_hash, is_admin, created_at) "
            "VALUES (%s, %s, %s, %s)",
            (username, password_hash, is_admin, created_at),
        )
        return cur.lastrowid

    try:
        user_id = await db.transaction(work, name="insert_user")
    except pymysql.err.IntegrityError as exc:
        if error_code(exc) == DUPLICATE_KEY:
            raise UsernameExists(username) from None
        raise
    return {"id": user_id, "username": username, "is_admin": is_admin, "created_at": created_at}


async def user_by_name(db: Database, username: str) -> dict | None:
    return await db.fetch_one(
        "SELECT id, username, password_hash, is_admin, created_at FROM users WHERE username = %s",
        (username,),
    )


async def user_by_id(db: Database, user_id: int) -> dict | None:
    return await db.fetch_one(
        "SELECT id, username, password_hash, is_admin, created_at FROM users WHERE id = %s",
        (user_id,),
    )
