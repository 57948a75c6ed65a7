"""The anti-bot challenge: ALTCHA proof of work, bound to a user and an activity, single use.

A challenge is ALTCHA's current (v2) JSON, what the widget 3.x solves by default: its
signed parameters carry `expiresAt` and, in `data`, `a` (activity), `u` (user) and `d`
(the difficulty it was issued at), so nothing is stored when one is issued. A solution to
a challenge of another difficulty than the activity's now is refused: a change of
difficulty voids the challenges issued before it. The server picks the counter (below the
activity's difficulty) and signs the derived key it leads to, so checking a solution
is two HMACs, no key derivation. The v1 JSON (salt carrying `expires`, `a`, `u`, `d`)
is still issued on request and its payloads accepted. Then one claim per challenge:
`SET NX` in Redis (every worker and instance), or a per-process set without Redis
(and while Redis is away). The design and the order of checks: docs/seckill.md.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import altcha

from common.errors import Forbidden
from common.formats import utcnow
from common.redis import REDIS_ERRORS, RedisClient, RedisStatus

logger = logging.getLogger("seckill.challenge")

# One SHA-256 per counter tried, as in v1: the activity's difficulty keeps its meaning.
ALGORITHM = "SHA-256"
COST = 1
# Claims kept in memory at most (each lives until its challenge expires).
MAX_CLAIMS_IN_MEMORY = 200_000
REDIS_RETRY_SECONDS = 1.0
# How long a worker trusts an activity's challenge rule before the start (a PATCH on another
# worker may change it), and after it (it is fixed then).
RULE_TRUST_SECONDS = 1.0
STARTED_TRUST_SECONDS = 3600.0
MAX_RULES_IN_MEMORY = 256


CHANGED = "the activity's challenge has changed since this one was issued; fetch a new one"


class ChallengeFailed(Forbidden):
    code = "challenge_failed"


def hmac_key(service_token: str) -> str:
    """Derived from the service credential, which every instance shares already."""
    return hashlib.sha256(b"seckill altcha\0" + service_token.encode()).hexdigest()


class Challenges:
    """One per worker: issues challenges and checks solutions to them."""

    def __init__(
        self,
        key: str,
        ttl_seconds: int,
        redis: RedisClient | None,
        prefix: str = "seckill",
        status: RedisStatus | None = None,
    ):
        self.key = key
        # Signs the derived key that solves a v2 challenge: verifying needs no derivation.
        self.key_secret = hashlib.sha256(b"seckill altcha key\0" + key.encode()).hexdigest()
        self.ttl = ttl_seconds
        self.redis = redis
        self.status = status if redis is not None else None
        if self.status is not None:
            self.status.uses("challenge_solutions")
        self.prefix = f"{prefix}:altcha:"
        self._claims: OrderedDict[str, float] = OrderedDict()  # challenge -> expires (wall)
        self._redis_away = False
        self._retry_redis_at = 0.0

    def issue(self, activity_id: int, user_id: int, difficulty: int) -> dict:
        """A challenge as ALTCHA's widget (3.x, default configuration) and solvers take it:
        the counter that solves it is drawn below the activity's difficulty."""
        challenge = altcha.create_challenge(
            ALGORITHM,
            COST,
            counter=secrets.randbelow(difficulty),
            expires_at=datetime.now(UTC) + timedelta(seconds=self.ttl),
            data={"a": str(activity_id), "u": str(user_id), "d": str(difficulty)},
            hmac_secret=self.key,
            hmac_key_secret=self.key_secret,
        )
        return challenge.to_dict()

    def issue_v1(self, activity_id: int, user_id: int, difficulty: int) -> dict:
        """The same as ALTCHA's v1 JSON, for clients that solve only that."""
        challenge = altcha.create_challenge_v1(
            algorithm=ALGORITHM,
            max_number=difficulty,
            hmac_key=self.key,
            expires=datetime.now(UTC) + timedelta(seconds=self.ttl),
            params={"a": str(activity_id), "u": str(user_id), "d": str(difficulty)},
        )
        return challenge.to_dict()

    def verify(
        self, payload: str | None, activity_id: int, user_id: int, difficulty: int
    ) -> tuple[str, float]:
        """Check a solution (base64 ALTCHA payload, v2 or v1) without claiming it: its
        challenge and when that expires. ChallengeFailed if missing, forged, wrong,
        expired, not bound to this user and activity, or issued at another difficulty
        than the activity's now."""
        if not payload:
            raise ChallengeFailed("this activity asks for a solved challenge (X-Altcha header)")
        try:
            decoded = json.loads(base64.b64decode(payload, validate=True))
        except (ValueError, binascii.Error):
            raise ChallengeFailed("the challenge solution is not an ALTCHA payload") from None
        if isinstance(decoded, dict) and isinstance(decoded.get("challenge"), dict):
            return self._verify_v2(decoded, activity_id, user_id, str(difficulty))
        return self._verify_v1(payload, activity_id, user_id, str(difficulty))

    def _verify_v2(
        self, decoded: dict, activity_id: int, user_id: int, difficulty: str
    ) -> tuple[str, float]:
        try:
            solution = altcha.Payload.from_dict(decoded)
            data = solution.challenge.parameters.data or {}
            bound = data.get("a") == str(activity_id) and data.get("u") == str(user_id)
        except (ValueError, TypeError, KeyError, AttributeError):
            raise ChallengeFailed("the challenge solution is not an ALTCHA payload") from None
        if not bound:
            raise ChallengeFailed("the challenge was issued for another user or activity")
        if data.get("d") != difficulty:
            raise ChallengeFailed(CHANGED)
        try:
            result = altcha.verify_solution(solution, self.key, hmac_key_secret=self.key_secret)
        except (ValueError, TypeError, AttributeError):
            result = None
        expires = solution.challenge.parameters.expires_at
        if result is not None and result.expired:
            raise ChallengeFailed("the challenge has expired")
        if result is None or not result.verified or not isinstance(expires, int):
            raise ChallengeFailed("the challenge solution is wrong")
        return solution.challenge.signature, float(expires)

    def _verify_v1(
        self, payload: str, activity_id: int, user_id: int, difficulty: str
    ) -> tuple[str, float]:
        try:
            solution = altcha.PayloadV1.from_base64(payload)
            _, expires, params = solution.parse_salt()
        except (ValueError, TypeError, KeyError, AttributeError):
            raise ChallengeFailed("the challenge solution is not an ALTCHA payload") from None
        if params.get("a") != [str(activity_id)] or params.get("u") != [str(user_id)]:
            raise ChallengeFailed("the challenge was issued for another user or activity")
        if params.get("d") != [difficulty]:
            raise ChallengeFailed(CHANGED)
        ok, error = altcha.verify_solution_v1(solution, self.key, check_expires=True)
        if not ok or expires is None:
            raise ChallengeFailed(
                "the challenge has expired"
                if error and "expired" in error
                else "the challenge solution is wrong"
            )
        return solution.challenge, expires

    async def claim(self, challenge: str, expires: float) -> None:
        """Use the solution up; ChallengeFailed if it was used before."""
        ttl = max(1, int(expires - time.time()) + 1)
        if self.redis is not None and time.monotonic() >= self._retry_redis_at:
            try:
                first = await self.redis.set(self.prefix + challenge, b"1", nx=True, ex=ttl)
            except REDIS_ERRORS as exc:
                self._redis_failed(exc)
            else:
                if self._redis_away:
                    self._redis_away = False
                    if self.status is not None:
                        self.status.back("challenge_solutions")
                    logger.warning("Redis answers again: challenge solutions are claimed there")
                if not first:
                    raise ChallengeFailed("this challenge solution has been used")
                return
        self._claim_in_memory(challenge, expires)

    def _claim_in_memory(self, challenge: str, expires: float) -> None:
        now = time.time()
        while self._claims and (
            len(self._claims) >= MAX_CLAIMS_IN_MEMORY or next(iter(self._claims.values())) < now
        ):
            self._claims.popitem(last=False)
        if challenge in self._claims:
            raise ChallengeFailed("this challenge solution has been used")
        self._claims[challenge] = expires

    def _redis_failed(self, exc: BaseException) -> None:
        if not self._redis_away:
            self._redis_away = True
            if self.status is not None:
                self.status.away("challenge_solutions", exc)
            logger.warning("Redis does not answer (%s): solutions are claimed per process", exc)
        self._retry_redis_at = time.monotonic() + REDIS_RETRY_SECONDS


class ChallengeRules:
    """Per worker: what each activity asks (its difficulty, 0 for no challenge), read from
    MySQL once and kept: for good once the sale has started (it cannot change then), and
    before that for at most RULE_TRUST_SECONDS and never past the start."""

    def __init__(self, load: Callable[[int], Awaitable[dict | None]]):
        self.load = load
        self._rules: OrderedDict[int, tuple[int, float]] = OrderedDict()
        self._loading: dict[int, asyncio.Future] = {}

    def forget(self, activity_id: int) -> None:
        self._rules.pop(activity_id, None)

    async def difficulty(self, activity_id: int) -> int:
        rule = self._rules.get(activity_id)
        if rule is not None and rule[1] > time.monotonic():
            return rule[0]
        # One read per activity however many requests ask at once (the start of a sale).
        loading = self._loading.get(activity_id)
        if loading is None:
            loading = self._loading[activity_id] = asyncio.ensure_future(self._read(activity_id))
            loading.add_done_callback(lambda _: self._loading.pop(activity_id, None))
        return await asyncio.shield(loading)

    async def _read(self, activity_id: int) -> int:
        row = await self.load(activity_id)
        if row is None:
            return 0  # the seckill answers not_found
        difficulty = row["challenge_difficulty"] if row["challenge"] else 0
        until_start = (row["starts_at"] - utcnow()).total_seconds()
        trust = min(RULE_TRUST_SECONDS, until_start) if until_start > 0 else STARTED_TRUST_SECONDS
        self._rules[activity_id] = (difficulty, time.monotonic() + trust)
        while len(self._rules) > MAX_RULES_IN_MEMORY:
            self._rules.popitem(last=False)
        return difficulty
