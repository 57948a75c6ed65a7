"""The Locust load run as a smoke test: a short headless flash sale with zero failures."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import subprocess
import sys

from testkit.stack import ADMIN, ROOT, free_port

LOCUSTFILE = ROOT / "bench" / "locust" / "locustfile.py"


def locust(
    stack, tmp_path, *args: str, admin: bool = True
) -> tuple[subprocess.CompletedProcess, dict]:
    """Run the locustfile headless against the stack; its output and its final stats."""
    stats_file = tmp_path / f"stats-{secrets.token_hex(3)}.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCUST_", "ADMIN_"))}
    if admin:
        env.update(ADMIN_USERNAME=ADMIN[0], ADMIN_PASSWORD=ADMIN[1])
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(LOCUSTFILE),
            "--headless",
            "--only-summary",
            "--host",
            stack.activity_url,
            "--user-url",
            stack.user_url,
            "--order-url",
            stack.order_url,
            "--json-file",
            str(stats_file.with_suffix("")),
            *args,
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    stats = json.loads(stats_file.read_text()) if stats_file.exists() else []
    return result, {row["name"]: row for row in stats}


async def test_a_flash_sale_sells_exactly_its_stock_with_no_failures(stack, tmp_path):
    result, stats = await asyncio.to_thread(
        locust,
        stack,
        tmp_path,
        "--users",
        "50",
        "--spawn-rate",
        "50",
        "--run-time",
        "90s",
        "--stock",
        "20",
        "--attempts",
        "3",
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    line = re.search(
        r"^INVARIANT OK \| activity=(\d+) stock=20 remaining=0 orders=20 users=20 created=20 "
        r"paid=0 cancelled=0 expired=0 \| answers placed=20 repeat=(\d+) sold_out=(\d+) "
        r"paid=0 cancelled=0 walked=20$",
        result.stdout,
        re.M,
    )
    assert line, output[-4000:]
    # Every user made three attempts: 20 placed, their 40 repeats, 30 users sold out three times.
    assert (int(line.group(2)), int(line.group(3))) == (40, 90)

    seckill = stats["/activities/[id]/seckill"]
    assert seckill["num_requests"] == 150 and seckill["num_failures"] == 0
    assert all(row["num_failures"] == 0 for row in stats.values()), stats
    assert stats["/users"]["num_requests"] == 50

    activity_id = int(line.group(1))
    rows = stack.query(
        "activity_service", "SELECT stock, remaining FROM activities WHERE id = %s", (activity_id,)
    )
    assert rows == [{"stock": 20, "remaining": 0}]
    orders = stack.query(
        "order_service",
        "SELECT COUNT(*) AS n, COUNT(DISTINCT user_id) AS users FROM orders WHERE activity_id = %s",
        (activity_id,),
    )
    assert orders == [{"n": 20, "users": 20}]


async def test_shoppers_pay_cancel_or_walk_away_and_every_unpaid_unit_comes_back(stack, tmp_path):
    result, stats = await asyncio.to_thread(
        locust,
        stack,
        tmp_path,
        "--users",
        "40",
        "--spawn-rate",
        "40",
        "--run-time",
        "120s",
        "--stock",
        "30",
        "--attempts",
        "2",
        "--pay-within",
        "10",
        "--pay-share",
        "0.4",
        "--cancel-share",
        "0.3",
        "--settle-timeout",
        "30",
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    line = re.search(
        r"^INVARIANT OK \| activity=\d+ stock=30 remaining=(\d+) orders=(\d+) users=(\d+) "
        r"created=0 paid=(\d+) cancelled=(\d+) expired=(\d+) \| answers placed=(\d+) .* "
        r"paid=(\d+) cancelled=(\d+) walked=(\d+)$",
        result.stdout,
        re.M,
    )
    assert line, output[-4000:]
    left, orders, users, paid, cancelled, expired, placed, *chosen = map(int, line.groups())
    assert orders == users == placed >= 30  # a unit given back may sell again to a loser
    assert (paid, cancelled, expired) == tuple(chosen)  # each shopper's choice, as stored
    assert 30 - left == paid  # every unpaid unit back on sale, exactly once
    assert all(row["num_failures"] == 0 for row in stats.values()), stats


async def test_the_check_fails_when_the_books_do_not_balance(stack, api, tmp_path):
    activity = await api.create_activity(stock=3)
    # A stray order that no seckill sold: order_service now holds one more than stock - remaining.
    stack.query(
        "order_service",
        "INSERT INTO orders (order_no, activity_id, user_id, amount, status, created_at, "
        "expires_at) VALUES (%s, %s, %s, %s, 'created', NOW(6), NOW(6) + INTERVAL 1 HOUR)",
        ("stray" + secrets.token_hex(6), activity["id"], 10**9, "19.90"),
    )
    result, stats = await asyncio.to_thread(
        locust,
        stack,
        tmp_path,
        "--users",
        "5",
        "--spawn-rate",
        "5",
        "--run-time",
        "60s",
        "--activity-id",
        str(activity["id"]),
        "--attempts",
        "1",
        "--settle-timeout",
        "2",
    )
    assert result.returncode == 1, result.stdout + result.stderr[-3000:]
    failed = r"^INVARIANT FAILED: 4 orders created or paid but 3 sold \|"
    assert re.search(failed, result.stdout, re.M), result.stdout
    assert stats["/activities/[id]/seckill"]["num_failures"] == 0


async def test_refuses_to_run_without_admin_credentials(stack, tmp_path):
    result, _ = await asyncio.to_thread(
        locust, stack, tmp_path, "--users", "1", "--run-time", "5s", admin=False
    )
    assert result.returncode != 0
    assert "set ADMIN_PASSWORD" in result.stderr


async def test_a_flash_sale_with_the_challenge_on_sells_its_stock_with_no_failures(stack, tmp_path):
    result, stats = await asyncio.to_thread(
        locust,
        stack,
        tmp_path,
        "--users",
        "20",
        "--spawn-rate",
        "20",
        "--run-time",
        "90s",
        "--stock",
        "10",
        "--attempts",
        "2",
        "--challenge",
        "1000",
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert re.search(
        r"^INVARIANT OK \| activity=\d+ stock=10 remaining=0 orders=10 ", result.stdout, re.M
    ), output[-4000:]
    assert stats["/activities/[id]/challenge"]["num_requests"] >= 20
    assert all(row["num_failures"] == 0 for row in stats.values()), stats


def test_a_failed_set_up_stops_the_run_at_once_with_one_line(tmp_path):
    """The admin's login fails (here: nothing answers at user_service's address): no shopper
    starts, one line names the cause, and locust exits non-zero long before its run time."""
    nowhere = f"http://127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCUST_", "ADMIN_"))}
    env.update(ADMIN_USERNAME=ADMIN[0], ADMIN_PASSWORD=ADMIN[1])
    argv = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless"]
    argv += ["--users", "50", "--spawn-rate", "50", "--run-time", "2m", "--host", nowhere]
    argv += ["--user-url", nowhere, "--order-url", nowhere]
    # The timeout only guards against a hang: the run's own time is 2 minutes.
    result = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=100)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    failed = [line for line in output.splitlines() if "LOAD SET-UP FAILED" in line]
    assert len(failed) == 1, output
    assert "admin login" in failed[0] and nowhere in failed[0], failed
    assert "Traceback" not in output, output
    assert "INVARIANT" not in output, output
