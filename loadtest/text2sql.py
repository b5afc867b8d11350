"""Text-to-SQL: replay schema + question prompts in the reference benchmark's chat format.

locust -f loadtest/text2sql.py --headless -H http://127.0.0.1:8000
"""

from loadtest.machinery import ChatUser, RateSearchShape
from loadtest.tasks import TEXT2SQL


class Text2SQLUser(ChatUser):
    task_spec = TEXT2SQL


class Search(RateSearchShape):
    pass
