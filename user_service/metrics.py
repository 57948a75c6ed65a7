"""user_service's own metric families (docs/metrics.md); the shared HTTP and MySQL ones
are common/telemetry/metrics.py's."""

from __future__ import annotations

from prometheus_client import Counter

from common.telemetry.metrics import KnownSeries

# A result is the success's name or the code of the error answered (common/errors.py).
LOGIN_RESULTS = (
    "ok",
    "invalid_credentials",
    "account_disabled",
    "rate_limited",
    "busy",
    "invalid_request",
    "bad_request",
    "service_unavailable",
)
REGISTRATION_RESULTS = (
    "created",
    "username_taken",
    "weak_password",
    "rate_limited",
    "busy",
    "invalid_request",
    "bad_request",
    "service_unavailable",
)
# The names of this service's database work (common/db.py), exported at 0 from start-up.
TRANSACTIONS = (
    "insert_user",
    "start_family",
    "rotate_refresh_token",
    "revoke_family",
    "change_password",
    "update_user_flags",
)

USER_LOGINS = Counter("user_logins", "Logins, by result (ok or the error's code)", ["result"])
USER_REGISTRATIONS = Counter(
    "user_registrations", "Sign-ups, by result (created or the error's code)", ["result"]
)

KNOWN: tuple[KnownSeries, ...] = (
    (USER_LOGINS, [(result,) for result in LOGIN_RESULTS]),
    (USER_REGISTRATIONS, [(result,) for result in REGISTRATION_RESULTS]),
)
