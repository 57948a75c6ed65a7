"""activity_service schema: peewee models and migrations only; queries live in repository.py."""

import peewee
import playhouse.migrate
from playhouse.migrate import MySQLMigrator

from common.config import Settings
from common.migrations import PreciseDateTimeField, migrate

database = peewee.MySQLDatabase(None)


class Activity(peewee.Model):
    id = peewee.BigAutoField()
    name = peewee.CharField(max_length=100)
    product_name = peewee.CharField(max_length=100)
    price = peewee.DecimalField(max_digits=10, decimal_places=2)
    stock = peewee.IntegerField()
    remaining = peewee.IntegerField(constraints=[peewee.Check("remaining >= 0")])
    # Seconds a buyer has to pay; an order's expires_at is its created_at plus this.
    pay_within_seconds = peewee.IntegerField(constraints=[peewee.SQL("DEFAULT 900")])
    # Units given back by cancelled or expired orders: records = stock - remaining + released.
    released = peewee.IntegerField(constraints=[peewee.SQL("DEFAULT 0")])
    starts_at = PreciseDateTimeField()
    ends_at = PreciseDateTimeField()
    created_at = PreciseDateTimeField()
    updated_at = PreciseDateTimeField()
    # The anti-bot challenge (docs/seckill.md): asked or not, and ALTCHA's maxnumber.
    challenge = peewee.BooleanField(default=False)
    challenge_difficulty = peewee.IntegerField(default=50_000)

    class Meta:
        database = database
        table_name = "activities"


class SeckillRecord(peewee.Model):
    """One per (activity, user): the primary key is what makes 'one order per user' hold.

    A natural key, no AUTO_INCREMENT: the batch's INSERT ... SELECT takes no table-level
    AUTO-INC lock inside the hot row's critical section (docs/seckill.md).
    """

    activity_id = peewee.BigIntegerField()
    user_id = peewee.BigIntegerField()
    order_no = peewee.CharField(max_length=32, unique=True)
    amount = peewee.DecimalField(max_digits=10, decimal_places=2)
    created_at = PreciseDateTimeField()
    expires_at = PreciseDateTimeField()
    # 'cancelled' or 'expired' once order_service has given the unit back; NULL before.
    released_as = peewee.CharField(max_length=16, null=True)
    released_at = PreciseDateTimeField(null=True)
    # When order_service acknowledged the order; NULL until then: the outbox is the
    # records whose mark is still NULL, read through this index by the relay.
    delivered_at = PreciseDateTimeField(null=True)

    class Meta:
        database = database
        table_name = "seckill_records"
        primary_key = peewee.CompositeKey("activity_id", "user_id")
        indexes = ((("delivered_at", "created_at"), False),)


def add_order_lifecycle(migrator: MySQLMigrator) -> None:
    """1: pay deadlines and released units. Existing records get the default deadline,
    created_at + 900 s, as order_service's migration 1 gives their orders."""
    for sql in (
        "ALTER TABLE activities ADD COLUMN pay_within_seconds INT NOT NULL DEFAULT 900, "
        "ADD COLUMN released INT NOT NULL DEFAULT 0",
        "ALTER TABLE seckill_records ADD COLUMN expires_at DATETIME(6) NULL, "
        "ADD COLUMN released_as VARCHAR(16) NULL, ADD COLUMN released_at DATETIME(6) NULL",
        "UPDATE seckill_records SET expires_at = created_at + INTERVAL 900 SECOND",
        "ALTER TABLE seckill_records MODIFY expires_at DATETIME(6) NOT NULL",
    ):
        migrator.database.execute_sql(sql)


class AnswerCount(peewee.Model):
    """The sale dashboard's per-second answer counts when there is no Redis to hold them."""

    activity_id = peewee.BigIntegerField()
    second = peewee.BigIntegerField()  # Unix time
    field = peewee.CharField(max_length=24)  # o:<outcome> or l:<latency bucket>
    n = peewee.BigIntegerField()

    class Meta:
        database = database
        table_name = "dashboard_counts"
        primary_key = peewee.CompositeKey("activity_id", "second", "field")


MODELS = [Activity, SeckillRecord, AnswerCount]


def add_challenge(migrator: MySQLMigrator) -> None:
    """2: the anti-bot challenge per activity, off for existing activities."""
    playhouse.migrate.migrate(
        migrator.add_column("activities", "challenge", Activity.challenge),
        migrator.add_column("activities", "challenge_difficulty", Activity.challenge_difficulty),
    )


def natural_key_and_delivered_mark(migrator: MySQLMigrator) -> None:
    """3: records keyed by (activity_id, user_id), no AUTO_INCREMENT id; the outbox table
    becomes a delivered mark on each record. Records still in the outbox stay undelivered
    (the relay sends them); every other record was acknowledged, so it is marked delivered.
    One ALTER, so the unique (activity, user) guarantee never lapses."""
    db = migrator.database
    unique = db.execute_sql(
        "SELECT DISTINCT index_name FROM information_schema.statistics WHERE table_schema = "
        "DATABASE() AND table_name = 'seckill_records' AND non_unique = 0 "
        "AND column_name = 'user_id'"
    ).fetchone()[0]
    db.execute_sql(
        "ALTER TABLE seckill_records DROP PRIMARY KEY, DROP COLUMN id, "  # noqa: S608
        f"DROP INDEX `{unique}`, ADD PRIMARY KEY (activity_id, user_id), "
        "ADD COLUMN delivered_at DATETIME(6) NULL, "
        "ADD INDEX seckillrecord_delivered_at_created_at (delivered_at, created_at)"
    )
    db.execute_sql(
        "UPDATE seckill_records r LEFT JOIN outbox o ON o.order_no = r.order_no "
        "SET r.delivered_at = UTC_TIMESTAMP(6) WHERE o.order_no IS NULL"
    )
    db.execute_sql("DROP TABLE outbox")


MIGRATIONS: list = [
    (1, add_order_lifecycle),
    (2, add_challenge),
    (3, natural_key_and_delivered_mark),
]


def run_migrations(settings: Settings) -> int:
    return migrate(settings, database, MODELS, MIGRATIONS)
