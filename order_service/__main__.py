from common.runner import main

main("order_service")
