"""activity_service's business errors."""

from common.errors import Conflict, InvalidRequest, NotFound


class ActivityNotFound(NotFound):
    def __init__(self, activity_id: int):
        super().__init__(f"activity {activity_id} not found")


class SoldOut(Conflict):
    code = "sold_out"

    def __init__(self, activity_id: int):
        super().__init__(f"activity {activity_id} is sold out")


class NotStarted(Conflict):
    code = "not_started"

    def __init__(self, activity_id: int):
        super().__init__(f"activity {activity_id} has not started yet")


class Ended(Conflict):
    code = "ended"

    def __init__(self, activity_id: int):
        super().__init__(f"activity {activity_id} has ended")


class ActivityStarted(Conflict):
    code = "activity_started"


class ActivityEnded(Conflict):
    code = "activity_ended"


class HasOrders(Conflict):
    code = "has_orders"


class StockBelowSold(InvalidRequest):
    def __init__(self, sold: int):
        super().__init__(
            [{"field": "stock", "message": f"{sold} units are already sold; stock cannot be less"}]
        )
