"""hotpotqa: see loadtest/tasks.py for the prompt, and ../shared/datasets/hotpotqa/SOURCE.md for the data.

locust -f loadtest/hotpotqa.py --headless -H http://127.0.0.1:8000
"""

from loadtest.machinery import ChatUser, RateSearchShape
from loadtest.tasks import HOTPOTQA


class HotpotqaUser(ChatUser):
    task_spec = HOTPOTQA


class Search(RateSearchShape):
    pass
