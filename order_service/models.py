"""order_service schema: peewee models and migrations only; queries live in repository.py."""

import peewee
from playhouse.migrate import MySQLMigrator

from common.config import Settings
from common.migrations import PreciseDateTimeField, migrate

database = peewee.MySQLDatabase(None)


class Order(peewee.Model):
    id = peewee.BigAutoField()
    order_no = peewee.CharField(max_length=32, unique=True)
    activity_id = peewee.BigIntegerField()
    user_id = peewee.BigIntegerField()
    amount = peewee.DecimalField(max_digits=10, decimal_places=2)
    # created -> paid | cancelled | expired (docs/api.md)
    status = peewee.CharField(max_length=16, default="created")
    created_at = PreciseDateTimeField()
    expires_at = PreciseDateTimeField()
    paid_at = PreciseDateTimeField(null=True)
    closed_at = PreciseDateTimeField(null=True)  # when it was cancelled or expired

    class Meta:
        database = database
        table_name = "orders"
        indexes = (
            (("user_id", "created_at"), False),
            (("activity_id", "created_at"), False),
            # One order per (activity, user) holds here too, whatever the sender does.
            (("activity_id", "user_id"), True),
            # The sweeper's search: unpaid orders past their deadline.
            (("status", "expires_at"), False),
        )


class ReleaseOutbox(peewee.Model):
    """Units of cancelled or expired orders not yet acknowledged by activity_service."""

    order_no = peewee.CharField(max_length=32, primary_key=True)
    status = peewee.CharField(max_length=16)  # cancelled | expired
    created_at = PreciseDateTimeField(index=True)

    class Meta:
        database = database
        table_name = "release_outbox"


def add_order_lifecycle(migrator: MySQLMigrator) -> None:
    """1: pay deadlines. Existing orders get created_at + 900 s (the default deadline), as
    activity_service's migration 1 gives their records; release_outbox is a new table."""
    for sql in (
        "ALTER TABLE orders ADD COLUMN expires_at DATETIME(6) NULL, "
        "ADD COLUMN closed_at DATETIME(6) NULL",
        "UPDATE orders SET expires_at = created_at + INTERVAL 900 SECOND",
        "ALTER TABLE orders MODIFY expires_at DATETIME(6) NOT NULL",
        "CREATE INDEX order_status_expires_at ON orders (status, expires_at)",
    ):
        migrator.database.execute_sql(sql)


MODELS = [Order, ReleaseOutbox]
MIGRATIONS: list = [(1, add_order_lifecycle)]


def run_migrations(settings: Settings) -> int:
    return migrate(settings, database, MODELS, MIGRATIONS)
