"""activity_service schema: peewee models and migrations only; queries live in repository.py."""

import peewee
import playhouse.migrate

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
    """One per (activity, user): the unique key is what makes 'one order per user' hold."""

    id = peewee.BigAutoField()
    activity_id = peewee.BigIntegerField()
    user_id = peewee.BigIntegerField()
    order_no = peewee.CharField(max_length=32, unique=True)
    amount = peewee.DecimalField(max_digits=10, decimal_places=2)
    created_at = PreciseDateTimeField()

    class Meta:
        database = database
        table_name = "seckill_records"
        indexes = ((("activity_id", "user_id"), True),)


class Outbox(peewee.Model):
    """Orders committed here but not yet acknowledged by order_service."""

    order_no = peewee.CharField(max_length=32, primary_key=True)
    created_at = PreciseDateTimeField(index=True)

    class Meta:
        database = database
        table_name = "outbox"


MODELS = [Activity, SeckillRecord, Outbox]


def _add_challenge(migrator) -> None:
    playhouse.migrate.migrate(
        migrator.add_column("activities", "challenge", Activity.challenge),
        migrator.add_column("activities", "challenge_difficulty", Activity.challenge_difficulty),
    )


MIGRATIONS: list = [(2, _add_challenge)]


def run_migrations(settings: Settings) -> int:
    return migrate(settings, database, MODELS, MIGRATIONS)
