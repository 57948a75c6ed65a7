from common.runner import main

main("user_service")
