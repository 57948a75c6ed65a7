"""The three services and their settings classes, for the code that starts and configures them."""

from __future__ import annotations

from activity_service.settings import ActivitySettings
from common.config import Settings
from order_service.settings import OrderSettings
from user_service.settings import UserSettings

SERVICES = ("user_service", "activity_service", "order_service")
SETTINGS: dict[str, type[Settings]] = {
    "user_service": UserSettings,
    "activity_service": ActivitySettings,
    "order_service": OrderSettings,
}
