from common.runner import main

main("activity_service")
