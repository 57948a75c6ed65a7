"""order_service's settings: the common ones, the service credential, and the sweeper."""

from typing import Annotated, ClassVar

from pydantic import Field

from common.config import SECRET, Settings


class OrderSettings(Settings):
    service_name: ClassVar[str] = "order_service"

    service_token: Annotated[str, SECRET] = Field(repr=False)
    # Unpaid orders are expired within this after their deadline (plus one sweep's time).
    order_sweep_interval_seconds: float = Field(1.0, gt=0, le=4)
