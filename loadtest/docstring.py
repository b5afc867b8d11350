"""docstring: see loadtest/tasks.py for the prompt, and ../shared/datasets/docstring/SOURCE.md for the data.

locust -f loadtest/docstring.py --headless -H http://127.0.0.1:8000
"""

from loadtest.machinery import ChatUser, RateSearchShape
from loadtest.tasks import DOCSTRING


class DocstringUser(ChatUser):
    task_spec = DOCSTRING


class Search(RateSearchShape):
    pass
