"""Your own prompts, sent as written: OpenAI chat or Batch JSONL, ShareGPT, a prompt column of a
JSONL or CSV file, or a text file with one prompt a line (loadtest/prompt_files.py).

locust -f loadtest/chat.py --headless -H http://127.0.0.1:8000 --dataset prompts.jsonl
"""

from loadtest.machinery import ChatUser, RateSearchShape
from loadtest.tasks import CHAT


class PromptFileUser(ChatUser):
    task_spec = CHAT


class Search(RateSearchShape):
    pass
