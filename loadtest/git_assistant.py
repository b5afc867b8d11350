"""git_assistant: see loadtest/tasks.py for the prompt, and ../shared/datasets/git_assistant/SOURCE.md for the data.

locust -f loadtest/git_assistant.py --headless -H http://127.0.0.1:8000
"""

from loadtest.machinery import ChatUser, RateSearchShape
from loadtest.tasks import GIT_ASSISTANT


class GitAssistantUser(ChatUser):
    task_spec = GIT_ASSISTANT


class Search(RateSearchShape):
    pass
