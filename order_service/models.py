"""order_service schema: peewee models and migrations only; queries live in repository.py."""

import peewee

from common.config import Settings
from common.migrations import PreciseDateTimeField, migrate

database = peewee.MySQLDatabase(None)


class Order(peewee.Model):
    id = peewee.BigAutoField()
    order_no = peewee.CharField(max_length=32, unique=True)
    activity_id = peewee.BigIntegerField()
    user_id = peewee.BigIntegerField()
    amount = peewee.DecimalField(max_digits=10, decimal_places=2)
    status = peewee.CharField(max_length=16, default="created")
    created_at = PreciseDateTimeField()
    paid_at = PreciseDateTimeField(null=True)

    class Meta:
        database = database
        table_name = "orders"
        indexes = (
            (("user_id", "created_at"), False),
            (("activity_id", "created_at"), False),
            # One order per (activity, user) holds here too, whatever the sender does.
            (("activity_id", "user_id"), True),
        )


MODELS = [Order]
MIGRATIONS: list = []


def run_migrations(settings: Settings) -> int:
    return migrate(settings, database, MODELS, MIGRATIONS)
