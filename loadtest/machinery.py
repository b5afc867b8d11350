"""What a locustfile needs: the streaming chat user and the rate-search shape.

A locustfile is a few lines:

    from loadtest.tasks import TEXT2SQL
    from loadtest.machinery import ChatUser, RateSearchShape

    class Text2SQLUser(ChatUser):
        task_spec = TEXT2SQL

    class Search(RateSearchShape):
        pass

Importing this module registers llmcap's listeners on Locust's events (`loadtest/plugin.py`);
the user is in `loadtest/users.py`, the shape in `loadtest/shape.py`, the controller that
runs the search in `loadtest/controller.py`.
"""

from loadtest import plugin  # noqa: F401  (registers the event listeners)
from loadtest.shape import RateSearchShape
from loadtest.users import ChatUser, RequestFailed

__all__ = ["ChatUser", "RateSearchShape", "RequestFailed"]
