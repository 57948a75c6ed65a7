"""user_service business rules: registration, login, tokens, who may see and change whom."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from datetime import timedelta

from common.auth import Principal, issue_token
from common.db import Database
from common.errors import Conflict, Forbidden, InvalidRequest, NotFound, Unauthorized
from common.formats import utcnow
from common.limits.ratelimit import NO_LIMIT, Limit, Limiter
from common.revocations import now_ms
from user_service import repository
from user_service.passwords import (
    HashPool,
    hash_password_sync,
    verify_password_sync,
)
from user_service.policy import password_problems
from user_service.schemas import Token, User
from user_service.settings import UserSettings

logger = logging.getLogger("seckill.users")


class UsernameTaken(Conflict):
    code = "username_taken"


class InvalidCredentials(Unauthorized):
    code = "invalid_credentials"


class AccountDisabled(Forbidden):
    code = "account_disabled"


class InvalidGrant(Unauthorized):
    code = "invalid_grant"


class RefreshTokenReused(Unauthorized):
    code = "refresh_token_reused"


class WrongPassword(Forbidden):
    code = "wrong_password"


class LastAdminLeft(Conflict):
    code = "last_admin"


def throttle_key(username: str) -> str:
    """The one spelling the failed-login throttle counts a name by: the lookup's. Usernames
    are ASCII (schemas.USERNAME_PATTERN) and the users table's collation ignores their
    letter case, so `Admin` and `aDMIN` are the account `admin`, and count as it."""
    return username.lower()


def token_hash(token: str) -> str:
    """What is stored of a refresh token: 256 random bits need no salt nor a slow hash."""
    return hashlib.sha256(token.encode()).hexdigest()


async def _no_revocation(user_id: int, not_before_ms: int) -> None:
    return None


class WeakPassword(InvalidRequest):
    code = "weak_password"

    def __init__(self, problems: list[str], field: str = "password"):
        super().__init__(
            [{"field": field, "message": problem} for problem in problems],
            detail="the password " + "; ".join(problems),
        )


class UserService:
    def __init__(
        self,
        db: Database,
        private_key,
        settings: UserSettings,
        pool: HashPool,
        limiter: Limiter | None = None,
        failures: Limit = NO_LIMIT,
        revoke_access: Callable[[int, int], Awaitable[None]] = _no_revocation,
    ):
        self.db = db
        # Stops a user's access tokens issued before a time in ms (common/revocations.py).
        self.revoke_access = revoke_access
        # Login throttling: `failures` per username; then 429 even for the right password.
        self.limiter = limiter or Limiter(None, enabled=False)
        self.failures = failures
        self.private_key = private_key
        self.settings = settings
        self.token_ttl = settings.token_ttl_seconds
        self.refresh_ttl = timedelta(seconds=settings.refresh_token_ttl_seconds)
        self.hash_cost = settings.password_hash_cost
        self.pool = pool
        # Verified against when the username is unknown, so both paths cost the same.
        self._decoy_hash = hash_password_sync("decoy-password", self.hash_cost)

    def _vet_and_hash(self, username: str, password: str) -> str | list[str]:
        """The policy's objections, or else the hash: one trip to the pool for both."""
        problems = password_problems(
            password,
            username,
            self.settings.password_min_length,
            self.settings.password_min_score,
        )
        return problems or hash_password_sync(password, self.hash_cost)

    async def register(self, username: str, password: str, is_admin: bool = False) -> User:
        password_hash = await self.pool.run(self._vet_and_hash, username, password)
        if isinstance(password_hash, list):
            raise WeakPassword(password_hash)
        try:
            user = await repository.insert_user(self.db, username, password_hash, is_admin)
        except repository.UsernameExists:
            raise UsernameTaken(f"username {username!r} is taken") from None
        return User.model_validate(user)

    async def ensure_admin(self, username: str, password: str) -> None:
        if await repository.user_by_name(self.db, username) is not None:
            return
        try:
            await self.register(username, password, is_admin=True)
            logger.info("created admin account %s", username)
        except UsernameTaken:
            pass  # another worker created it first

    async def login(self, username: str, password: str) -> Token:
        # Counted by the name asked for, known or not: an unknown user is answered the same.
        throttled = throttle_key(username)
        await self.limiter.check(self.failures, throttled)
        user = await repository.user_by_name(self.db, username)
        encoded = user["password_hash"] if user else self._decoy_hash
        if not await self.pool.run(verify_password_sync, password, encoded) or user is None:
            await self.limiter.count(self.failures, throttled)
            raise InvalidCredentials("wrong username or password")
        if user["disabled"]:
            raise AccountDisabled("this account is disabled")
        # iat is taken before the user's state is read: a token issued on a state that a
        # change then replaces is older than the change's revocation mark.
        issued_ms = now_ms()
        refresh = secrets.token_urlsafe(32)
        state = await repository.start_family(
            self.db,
            user["id"],
            user["password_hash"],
            token_hash(refresh),
            secrets.token_hex(16),
            utcnow() + self.refresh_ttl,
        )
        if state is None:  # the password changed since it was read
            raise InvalidCredentials("wrong username or password")
        if state["disabled"]:
            raise AccountDisabled("this account is disabled")
        return self._tokens(user["id"], bool(state["is_admin"]), issued_ms, refresh)

    def _tokens(self, user_id: int, is_admin: bool, issued_ms: int, refresh: str) -> Token:
        access = issue_token(self.private_key, user_id, is_admin, self.token_ttl, issued_ms)
        return Token(
            access_token=access,
            token_type="bearer",
            expires_in=self.token_ttl,
            refresh_token=refresh,
        )

    async def refresh(self, refresh_token: str) -> Token:
        """Rotate: the token presented is spent, the answer carries the next one."""
        issued_ms = now_ms()
        new = secrets.token_urlsafe(32)
        outcome, user = await repository.rotate(
            self.db, token_hash(refresh_token), token_hash(new), utcnow() + self.refresh_ttl
        )
        if outcome == "reused":
            logger.warning("a rotated refresh token was presented again; its family is revoked")
            raise RefreshTokenReused(
                "this refresh token was already used; every token of its login is revoked"
            )
        if outcome != "rotated":
            raise InvalidGrant("the refresh token is invalid, expired or revoked")
        return self._tokens(user["id"], bool(user["is_admin"]), issued_ms, new)

    async def revoke(self, refresh_token: str) -> None:
        """Logout: the token's whole family; an unknown token is not an error (RFC 7009)."""
        await repository.revoke_family_of(self.db, token_hash(refresh_token))

    async def change_password(self, principal: Principal, old: str, new: str) -> None:
        user = await repository.user_by_id(self.db, principal.user_id)
        if user is None:
            raise Unauthorized("the account behind this token no longer exists")
        if user["disabled"]:
            raise AccountDisabled("this account is disabled")
        # A wrong old password counts as a failed login of this username.
        await self.limiter.check(self.failures, throttle_key(user["username"]))
        if not await self.pool.run(verify_password_sync, old, user["password_hash"]):
            await self.limiter.count(self.failures, throttle_key(user["username"]))
            raise WrongPassword("old_password is not this account's password")
        new_hash = await self.pool.run(self._vet_and_hash, user["username"], new)
        if isinstance(new_hash, list):
            raise WeakPassword(new_hash, field="new_password")
        if not await repository.change_password(
            self.db, user["id"], user["password_hash"], new_hash
        ):
            raise WrongPassword("the password was changed meanwhile")
        await self._stop_access_tokens(user["id"])

    async def update_user(self, user_id: int, changes: dict[str, bool]) -> User:
        """An admin's change of disabled and/or is_admin."""
        try:
            before, after = await repository.update_flags(self.db, user_id, changes)
        except KeyError:
            raise NotFound(f"user {user_id} not found") from None
        except repository.LastAdmin:
            raise LastAdminLeft(
                "this is the last enabled admin: make another admin first"
            ) from None
        disabled_now = after["disabled"] and not before["disabled"]
        if disabled_now or (before["is_admin"] and not after["is_admin"]):
            await self._stop_access_tokens(user_id)
        return User.model_validate(after)

    async def _stop_access_tokens(self, user_id: int) -> None:
        """Revoke the access tokens issued up to now (after the change was committed).

        The mark is the next millisecond, and the answer waits for it: a token issued on the
        old state has an earlier iat (service.login, refresh), and one issued after the
        client hears the answer has this iat or later, so it stays valid.
        """
        not_before = now_ms() + 1
        while now_ms() < not_before:
            await asyncio.sleep(0.001)
        await self.revoke_access(user_id, not_before)

    async def get_user(self, viewer: Principal, user_id: int) -> User:
        if viewer.user_id != user_id and not viewer.is_admin:
            raise Forbidden("you may only see your own account")
        user = await repository.user_by_id(self.db, user_id)
        if user is None:
            raise NotFound(f"user {user_id} not found")
        return User.model_validate(user)
