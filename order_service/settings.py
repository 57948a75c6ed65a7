"""order_service's settings: the common ones, the service credential, and the sweeper."""

from typing import Annotated, ClassVar

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from common.config import SECRET, Settings
from common.cors import origins_setting


class OrderSettings(Settings):
    service_name: ClassVar[str] = "order_service"

    service_token: Annotated[str, SECRET] = Field(repr=False)
    # Unpaid orders are expired within this after their deadline (plus one sweep's time).
    order_sweep_interval_seconds: float = Field(1.0, gt=0, le=4)

    # The shop's page may call this service from these origins (CORS, docs/shop.md); unset:
    # activity_service's address on this machine (127.0.0.1 and localhost, its port).
    shop_origins: Annotated[tuple[str, ...], NoDecode] = ()
    _shop_origins = field_validator("shop_origins", mode="before")(origins_setting)
