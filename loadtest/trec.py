"""trec: see loadtest/tasks.py for the prompt, and ../shared/datasets/trec/SOURCE.md for the data.

locust -f loadtest/trec.py --headless -H http://127.0.0.1:8000
"""

from loadtest.machinery import ChatUser, RateSearchShape
from loadtest.tasks import TREC


class TrecUser(ChatUser):
    task_spec = TREC


class Search(RateSearchShape):
    pass
