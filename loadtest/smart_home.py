"""smart_home: see loadtest/tasks.py for the prompt, and ../shared/datasets/smart_home/SOURCE.md for the data.

locust -f loadtest/smart_home.py --headless -H http://127.0.0.1:8000
"""

from loadtest.machinery import ChatUser, RateSearchShape
from loadtest.tasks import SMART_HOME


class SmartHomeUser(ChatUser):
    task_spec = SMART_HOME


class Search(RateSearchShape):
    pass
