"""All of user_service's SQL."""

from __future__ import annotations

from datetime import datetime

from common.db import DUPLICATE_KEY, Database, IntegrityError, error_code
from common.formats import utcnow


class UsernameExists(Exception):
    pass


class LastAdmin(Exception):
    """The change would leave no admin who may log in."""


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
    except IntegrityError as exc:
        if error_code(exc) == DUPLICATE_KEY:
            raise UsernameExists(username) from None
        raise
    return {
        "id": user_id,
        "username": username,
        "is_admin": is_admin,
        "disabled": False,
        "created_at": created_at,
    }


USER_COLUMNS = "id, username, password_hash, is_admin, disabled, created_at"


async def user_by_name(db: Database, username: str) -> dict | None:
    return await db.fetch_one(
        f"SELECT {USER_COLUMNS} FROM users WHERE username = %s",  # noqa: S608 (constant)
        (username,),
    )


async def user_by_id(db: Database, user_id: int) -> dict | None:
    return await db.fetch_one(
        f"SELECT {USER_COLUMNS} FROM users WHERE id = %s",  # noqa: S608 (constant)
        (user_id,),
    )


# Refresh tokens. Every transaction that reads a user's state to issue tokens on it holds that
# user's row in share mode, and every change of that state takes it for update first: a token
# is issued on the state as committed, or the change revokes it (docs/api.md, the refresh flow).


async def _insert_refresh(cur, token_hash: str, family_id: str, user_id: int, expires_at) -> None:
    await cur.execute(
        "INSERT INTO refresh_tokens (token_hash, family_id, user_id, created_at, expires_at) "
        "VALUES (%s, %s, %s, %s, %s)",
        (token_hash, family_id, user_id, utcnow(), expires_at),
    )


async def start_family(
    db: Database,
    user_id: int,
    password_hash: str,
    token_hash: str,
    family_id: str,
    expires_at: datetime,
) -> dict | None:
    """A login's first refresh token, if the user still has the password just verified and is
    not disabled; returns the user's is_admin and disabled as they are now, or None."""

    async def work(cur) -> dict | None:
        await cur.execute(
            "SELECT is_admin, disabled FROM users WHERE id = %s AND password_hash = %s "
            "LOCK IN SHARE MODE",
            (user_id, password_hash),
        )
        user = await cur.fetchone()
        if user is not None and not user["disabled"]:
            await _insert_refresh(cur, token_hash, family_id, user_id, expires_at)
        return user

    return await db.transaction(work, name="start_family")


async def rotate(
    db: Database, old_hash: str, new_hash: str, expires_at: datetime
) -> tuple[str, dict | None]:
    """Exchange a refresh token for the next of its family, at most once.

    Returns ("rotated", user), ("reused", None) after revoking the whole family of a token
    that was rotated before, or ("invalid", None) for an unknown, expired or revoked token
    or a disabled user. The conditional UPDATE is what lets one exchange through: two at once
    wait on the row's lock, and the second finds it rotated.
    """
    now = utcnow()

    async def work(cur) -> tuple[str, dict | None]:
        await cur.execute(
            "SELECT id, family_id, user_id FROM refresh_tokens WHERE token_hash = %s", (old_hash,)
        )
        token = await cur.fetchone()
        if token is None:
            return "invalid", None
        await cur.execute(
            "SELECT id, is_admin, disabled FROM users WHERE id = %s LOCK IN SHARE MODE",
            (token["user_id"],),
        )
        user = await cur.fetchone()
        rotated = await cur.execute(
            "UPDATE refresh_tokens SET rotated_at = %s WHERE id = %s AND rotated_at IS NULL "
            "AND revoked_at IS NULL AND expires_at > %s",
            (now, token["id"], now),
        )
        if not rotated:
            await cur.execute(
                "SELECT rotated_at FROM refresh_tokens WHERE id = %s FOR UPDATE", (token["id"],)
            )
            if (await cur.fetchone())["rotated_at"] is None:
                return "invalid", None
            await _revoke_family(cur, token["family_id"], now)
            return "reused", None
        if user is None or user["disabled"]:
            await _revoke_family(cur, token["family_id"], now)
            return "invalid", None
        await _insert_refresh(cur, new_hash, token["family_id"], token["user_id"], expires_at)
        return "rotated", user

    return await db.transaction(work, name="rotate_refresh_token")


async def _revoke_family(cur, family_id: str, now: datetime) -> None:
    await cur.execute(
        "UPDATE refresh_tokens SET revoked_at = %s WHERE family_id = %s AND revoked_at IS NULL",
        (now, family_id),
    )


async def revoke_family_of(db: Database, token_hash: str) -> bool:
    """Logout: revoke the family of this token; False when no such token is known."""

    async def work(cur) -> bool:
        await cur.execute(
            "SELECT family_id FROM refresh_tokens WHERE token_hash = %s", (token_hash,)
        )
        token = await cur.fetchone()
        if token is not None:
            await _revoke_family(cur, token["family_id"], utcnow())
        return token is not None

    return await db.transaction(work, name="revoke_family")


async def _revoke_user_tokens(cur, user_id: int) -> None:
    await cur.execute(
        "UPDATE refresh_tokens SET revoked_at = %s WHERE user_id = %s AND revoked_at IS NULL",
        (utcnow(), user_id),
    )


async def change_password(db: Database, user_id: int, old_hash: str, new_hash: str) -> bool:
    """Set the new hash if the old one is still the user's, and revoke every refresh token of
    the user; False when the password changed meanwhile."""

    async def work(cur) -> bool:
        changed = await cur.execute(
            "UPDATE users SET password_hash = %s WHERE id = %s AND password_hash = %s",
            (new_hash, user_id, old_hash),
        )
        if changed:
            await _revoke_user_tokens(cur, user_id)
        return bool(changed)

    return await db.transaction(work, name="change_password")


async def update_flags(db: Database, user_id: int, changes: dict[str, bool]) -> tuple[dict, dict]:
    """Set disabled and/or is_admin (the keys of changes); a disabled user's refresh tokens
    are revoked. Returns the user before and after, or raises KeyError for an unknown id, or
    LastAdmin for a change that would leave no enabled admin."""

    async def work(cur) -> tuple[dict, dict]:
        if changes.get("is_admin") is False or changes.get("disabled") is True:
            # The enabled admins, locked (in id order) before the user's own row: of two
            # admins taking each other's flag at once, the second waits and then sees the
            # first's change, so one admin is always left.
            await cur.execute(
                "SELECT id FROM users WHERE is_admin = 1 AND disabled = 0 ORDER BY id FOR UPDATE"
            )
            if [row["id"] for row in await cur.fetchall()] == [user_id]:
                raise LastAdmin(user_id)
        await cur.execute(
            f"SELECT {USER_COLUMNS} FROM users WHERE id = %s FOR UPDATE",  # noqa: S608 (constant)
            (user_id,),
        )
        before = await cur.fetchone()
        if before is None:
            raise KeyError(user_id)
        after = {**before, **changes}
        await cur.execute(
            "UPDATE users SET disabled = %s, is_admin = %s WHERE id = %s",
            (after["disabled"], after["is_admin"], user_id),
        )
        if after["disabled"]:
            await _revoke_user_tokens(cur, user_id)
        return before, after

    return await db.transaction(work, name="update_user_flags")
