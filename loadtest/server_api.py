"""What the load test asks the server before and between steps: which model it serves, whether
its queue is empty, and its tokenizer. Plain HTTP (urllib): a few calls per run, off the hot path."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from llmcap.errors import BadInput, ServerUnreachable

QUEUE_GAUGES = ("vllm:num_requests_waiting", "vllm:num_requests_running")


def fetch_json(url: str, timeout_s: float, api_key: str | None = None, body: dict | None = None):
    """GET `url` (POST `body` as JSON when given) and parse the JSON answer."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    data = None
    if body is not None:
        data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
    request = urllib.request.Request(url, data, headers)
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return json.loads(response.read())


def resolve_model(host: str, wanted: str | None, api_key: str | None, listed_there: bool = True) -> str:
    """Check the server is an OpenAI-compatible one serving the model, before any load. A server whose
    /v1/models does not name its model (`listed_there` False) must answer /health, and the model be named."""
    if not listed_there:
        if not wanted:
            raise ServerUnreachable(f"{host}: this engine does not list its model: name it with --model")
        try:
            fetch_json(host + "/health", 10.0, api_key)
        except urllib.error.HTTPError as e:
            raise ServerUnreachable(f"{host}/health: HTTP {e.code}: the server is not healthy") from None
        except (urllib.error.URLError, OSError) as e:
            raise ServerUnreachable(f"{host}: cannot reach the server ({getattr(e, 'reason', e)})") from None
        except ValueError:
            pass  # healthy, whatever its body says
        return wanted
    url = host + "/v1/models"
    try:
        listed = [m["id"] for m in fetch_json(url, 10.0, api_key)["data"]]
    except urllib.error.HTTPError as e:
        raise ServerUnreachable(f"{url}: HTTP {e.code}: not an OpenAI-compatible server?") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise ServerUnreachable(f"{host}: cannot reach the server ({reason})") from None
    except (ValueError, KeyError, TypeError):
        raise ServerUnreachable(f"{url}: not an OpenAI model list: not an OpenAI-compatible server?") from None
    if wanted:
        if wanted not in listed:
            raise ServerUnreachable(f"{url}: model {wanted!r} is not served (served: {', '.join(listed) or 'none'})")
        return wanted
    if len(listed) != 1:
        raise ServerUnreachable(f"{url}: serves {len(listed)} models ({', '.join(listed)}): choose one with --model")
    return listed[0]


def server_queue_empty(metrics_url: str | None) -> bool:
    """vllm:num_requests_waiting and running are 0 (True when there are no metrics to read)."""
    if not metrics_url:
        return True
    try:
        with urllib.request.urlopen(metrics_url, timeout=2.0) as response:
            text = response.read().decode("utf-8", "replace")
        families = list(text_string_to_metric_families(text))
    except (OSError, ValueError):
        return True
    return not any(sample.value > 0 for family in families if family.name in QUEUE_GAUGES for sample in family.samples)


class ServerTokenizer:
    """The served model's tokenizer, through vLLM's /tokenize and /detokenize."""

    def __init__(
        self, host: str, model: str, api_key: str | None, chat_template_kwargs: dict, timeout_s: float, needed_for: str
    ):
        self.host, self.model, self.api_key = host, model, api_key
        self.kwargs = chat_template_kwargs
        self.timeout_s = timeout_s
        self.needed_for = needed_for  # named in the error where the server has no tokenizer

    def _post(self, path: str, body: dict, field: str):
        """`field` of the server's answer to `body` at `path`."""
        try:
            answer = fetch_json(self.host + path, self.timeout_s, self.api_key, body={"model": self.model, **body})
            return answer[field]
        except (OSError, ValueError) as e:  # refused, timed out, an HTTP error (404: no such route), not JSON
            reason = str(e)
        except (KeyError, TypeError, IndexError):
            reason = f"no {field!r} in its answer"
        raise BadInput(
            f"{self.host}{path}: {self.needed_for} need the server's tokenizer (vLLM's /tokenize and /detokenize): "
            f"{reason}"
        )

    def ids(self, text: str) -> list[int]:
        return self._post("/tokenize", {"prompt": text, "add_special_tokens": False}, "tokens")

    def text(self, ids: list[int]) -> str:
        return self._post("/detokenize", {"tokens": ids}, "prompt")

    def chat_count(self, messages: list[dict]) -> int:
        body: dict = {"messages": messages, "add_generation_prompt": True}
        if self.kwargs:
            body["chat_template_kwargs"] = self.kwargs
        return int(self._post("/tokenize", body, "count"))
