from common.runner import main
from order_service.settings import OrderSettings

main(OrderSettings)
