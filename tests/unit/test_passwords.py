"""Password hashes: salted scrypt, verified in constant time, never the password itself."""

import asyncio
import threading

import pytest

from testkit.poll import eventually
from user_service.passwords import (
    HashingBusy,
    HashPool,
    hash_password,
    hash_password_sync,
    verify_password,
    verify_password_sync,
)

COST = 4  # the smallest work factor: these tests check correctness, not strength


def test_round_trip():
    encoded = hash_password_sync("correct horse", COST)
    assert verify_password_sync("correct horse", encoded)
    assert not verify_password_sync("correct horsf", encoded)
    assert not verify_password_sync("", encoded)


def test_salted_and_self_describing():
    first, second = hash_password_sync("same", COST), hash_password_sync("same", COST)
    assert first != second
    scheme, cost, r, p, salt, digest = first.split("$")
    assert (scheme, cost) == ("scrypt", str(COST)) and int(r) >= 1 and int(p) >= 1
    assert "same" not in first


def test_the_cost_is_read_from_the_hash():
    encoded = hash_password_sync("pw-123456", 5)
    assert verify_password_sync("pw-123456", encoded)  # whatever the current setting


def test_unicode_passwords():
    encoded = hash_password_sync("pässwörd 密码 🔑", COST)
    assert verify_password_sync("pässwörd 密码 🔑", encoded)
    assert not verify_password_sync("passwort 密码 🔑", encoded)


@pytest.mark.parametrize(
    "encoded",
    [
        "",
        "plain",
        "bcrypt$4$8$1$c2FsdA==$ZGlnZXN0",
        "scrypt$x$8$1$c2FsdA==$ZGln",
        "scrypt$4$8$1$!!$!!",
    ],
)
def test_malformed_hashes_never_verify(encoded):
    assert verify_password_sync("anything", encoded) is False


def test_async_versions_run_off_the_loop():
    async def round_trip() -> tuple[bool, bool]:
        encoded = await hash_password("async-pass", COST)
        return await verify_password("async-pass", encoded), await verify_password("no", encoded)

    assert asyncio.run(round_trip()) == (True, False)


def test_the_pool_refuses_past_its_bound_and_a_hang_up_frees_no_slot_early():
    """Jobs count until their thread is done: a client hanging up cannot slip past the bound."""
    release = threading.Event()

    async def scenario() -> None:
        pool = HashPool(threads=1, queue=1)
        first = asyncio.create_task(pool.run(release.wait, 10))
        second = asyncio.create_task(pool.run(release.wait, 10))
        await asyncio.sleep(0.05)
        with pytest.raises(HashingBusy) as busy:
            await pool.run(release.wait, 10)
        assert busy.value.status == 503 and busy.value.headers == {"Retry-After": "1"}
        first.cancel()  # the running job's client hangs up: its thread still works
        await asyncio.sleep(0.05)
        assert pool.pending == 2
        with pytest.raises(HashingBusy):
            await pool.run(release.wait, 10)
        second.cancel()  # a waiting job is dropped and its slot freed
        await asyncio.sleep(0.05)
        assert pool.pending == 1
        release.set()
        await eventually(lambda: pool.pending == 0, 5, "every slot back", interval=0.01)
        assert await pool.run(len, "abc") == 3
        pool.close()

    asyncio.run(scenario())
