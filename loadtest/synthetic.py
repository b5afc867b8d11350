"""Synthetic prompts of drawn token lengths, for sizing without a dataset (loadtest/synthetic_prompts.py).

locust -f loadtest/synthetic.py --headless -H http://127.0.0.1:8000 --input-tokens normal:512,64 --output-tokens 128
"""

from loadtest.machinery import ChatUser, RateSearchShape
from loadtest.tasks import SYNTHETIC


class SyntheticUser(ChatUser):
    task_spec = SYNTHETIC


class Search(RateSearchShape):
    pass
