"""order_service's settings: the common ones; the service credential is required here."""

from typing import Annotated, ClassVar

from pydantic import Field

from common.config import SECRET, Settings


class OrderSettings(Settings):
    service_name: ClassVar[str] = "order_service"

    service_token: Annotated[str, SECRET] = Field(repr=False)
