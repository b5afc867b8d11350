"""ecommerce: see loadtest/tasks.py for the prompt, and ../shared/datasets/ecommerce/SOURCE.md for the data.

locust -f loadtest/ecommerce.py --headless -H http://127.0.0.1:8000
"""

from loadtest.machinery import ChatUser, RateSearchShape
from loadtest.tasks import ECOMMERCE


class EcommerceUser(ChatUser):
    task_spec = ECOMMERCE


class Search(RateSearchShape):
    pass
