from common.runner import main
from user_service.settings import UserSettings

main(UserSettings)
