"""banking77: see loadtest/tasks.py for the prompt, and ../shared/datasets/banking77/SOURCE.md for the data.

locust -f loadtest/banking77.py --headless -H http://127.0.0.1:8000
"""

from loadtest.machinery import ChatUser, RateSearchShape
from loadtest.tasks import BANKING77


class Banking77User(ChatUser):
    task_spec = BANKING77


class Search(RateSearchShape):
    pass
