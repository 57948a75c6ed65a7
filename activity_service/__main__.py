from activity_service.settings import ActivitySettings
from common.runner import main

main(ActivitySettings)
