"""user_service business rules: registration, login, who may see whom."""

from __future__ import annotations

import logging

from common.auth import Principal, issue_token
from common.db import Database
from common.errors import Conflict, Forbidden, InvalidRequest, NotFound, Unauthorized
from common.ratelimit import NO_LIMIT, Limit, Limiter
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


class WeakPassword(InvalidRequest):
    code = "weak_password"

    def __init__(self, problems: list[str]):
        super().__init__(
            [{"field": "password", "message": problem} for problem in problems],
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
    ):
        self.db = db
        # Login throttling: `failures` per username; then 429 even for the right password.
        self.limiter = limiter or Limiter(None, enabled=False)
        self.failures = failures
        self.private_key = private_key
        self.settings = settings
        self.token_ttl = settings.token_ttl_seconds
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
        await self.limiter.check(self.failures, username)
        user = await repository.user_by_name(self.db, username)
        encoded = user["password_hash"] if user else self._decoy_hash
        if not await self.pool.run(verify_password_sync, password, encoded) or user is None:
            await self.limiter.count(self.failures, username)
            raise InvalidCredentials("wrong username or password")
        token = issue_token(self.private_key, user["id"], bool(user["is_admin"]), self.token_ttl)
        return Token(access_token=token, token_type="bearer", expires_in=self.token_ttl)

    async def get_user(self, viewer: Principal, user_id: int) -> User:
        if viewer.user_id != user_id and not viewer.is_admin:
            raise Forbidden("you may only see your own account")
        user = await repository.user_by_id(self.db, user_id)
        if user is None:
            raise NotFound(f"user {user_id} not found")
        return User.model_validate(user)
