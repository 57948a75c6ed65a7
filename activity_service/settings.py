"""activity_service's settings: the common ones, the service credential, and seckill batching."""

from typing import Annotated, ClassVar

from pydantic import Field

from common.config import SECRET, Settings


class ActivitySettings(Settings):
    service_name: ClassVar[str] = "activity_service"

    service_token: Annotated[str, SECRET] = Field(repr=False)
    seckill_batch_max: int = Field(200, ge=1)
    seckill_batch_wait_ms: float = 0.0
