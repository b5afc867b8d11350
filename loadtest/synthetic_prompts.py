"""Synthetic prompts: requests built to input- and output-token distributions with the served model's
own tokenizer (the server's /tokenize and /detokenize), for a team with no dataset yet or one sizing
for longer prompts than it has.

Each prompt's text is a slice of a seeded pool of English words, cut in token ids and decoded by the
server, then counted the way the server will count it: the whole chat (template, shared prefix, the
per-request marker) through /tokenize with the request's chat_template_kwargs, and trimmed or grown
until the count is the drawn length. The output length is fixed per request (max_tokens = min_tokens,
ignore_eos), so the server generates exactly the drawn number of tokens.
"""

from __future__ import annotations

import dataclasses
import os
import random

from llmcap.errors import ProfileError
from loadtest.datasets import Prompts, prompt_hash
from loadtest.server_api import ServerTokenizer

KINDS = ("fixed", "uniform", "normal", "list")
WORDS = (
    "time year people way day man thing woman life child world school state family student group country "
    "problem hand part place case week company system program question work government number night point "
    "home water room mother area money story fact month lot right study book eye job word business issue "
    "side kind head house service friend father power hour game line end member law car city community name "
    "president team minute idea kid body information back parent face others level office door health person "
    "art war history party result change morning reason research girl guy moment air teacher force education "
    "open small large early young important public bad same able long great little own other old different "
    "find give tell become leave feel bring begin keep hold write stand hear mean meet include continue set "
    "learn lead understand watch follow stop create speak read allow add spend grow offer remember love consider"
).split()


@dataclasses.dataclass(frozen=True)
class Lengths:
    """A distribution of token counts: fixed:N, uniform:LOW,HIGH, normal:MEAN,SD (rounded, at least 1)
    or list:A,B,C (each equally likely: an empirical distribution)."""

    kind: str
    values: tuple[float, ...]

    def draw(self, rng: random.Random) -> int:
        if self.kind == "fixed":
            return int(self.values[0])
        if self.kind == "uniform":
            return rng.randint(int(self.values[0]), int(self.values[1]))
        if self.kind == "normal":
            return max(1, round(rng.gauss(self.values[0], self.values[1])))
        return int(rng.choice(self.values))

    @property
    def mean(self) -> float:
        if self.kind == "uniform":
            return (self.values[0] + self.values[1]) / 2
        if self.kind == "list":
            return sum(self.values) / len(self.values)
        return self.values[0]

    @property
    def high(self) -> float:
        """A length few draws pass (the pool of text must hold it)."""
        if self.kind == "normal":
            return self.values[0] + 5 * self.values[1]
        return max(self.values)


def parse_lengths(text: str | int) -> Lengths:
    """'256', 'fixed:256', 'uniform:128,512', 'normal:512,64', 'list:100,200,400'; ValueError otherwise."""
    kind, _, rest = str(text).strip().partition(":")
    if not rest:
        kind, rest = "fixed", kind
    expected = {"fixed": 1, "uniform": 2, "normal": 2}
    try:
        values = tuple(float(v) for v in rest.split(","))
    except ValueError:
        values = ()
    ok = (
        kind in KINDS
        and values
        and (kind == "list" or len(values) == expected[kind])
        and all(v >= (0 if kind == "normal" and i == 1 else 1) for i, v in enumerate(values))
        and (kind != "uniform" or values[0] <= values[1])
    )
    if not ok:
        raise ValueError(f"expected fixed:N, uniform:LOW,HIGH, normal:MEAN,SD or list:A,B,... (tokens), got {text!r}")
    return Lengths(kind, values)


def generate(settings, model: str, api_key: str | None) -> Prompts:
    """The run's prompts from its profile's `synthetic` section (a bad length names its field, exit 2)."""
    cfg = settings.profile.synthetic
    where = settings.profile_file or "arguments"
    lengths = {}
    for field in ("input_tokens", "output_tokens"):
        try:
            lengths[field] = parse_lengths(getattr(cfg, field))
        except ValueError as e:
            raise ProfileError(f"{where}: synthetic.{field}: {e}") from None
    if cfg.prompts < 1 or cfg.shared_prefix_tokens < 0:
        raise ProfileError(f"{where}: synthetic: needs prompts >= 1 and shared_prefix_tokens >= 0")
    tokenizer = ServerTokenizer(
        settings.host,
        model,
        api_key,
        settings.request.chat_template_kwargs,
        settings.request.timeout_s,
        "synthetic prompts",
    )
    return build_prompts(
        tokenizer,
        lengths["input_tokens"],
        lengths["output_tokens"],
        cfg.prompts,
        cfg.shared_prefix_tokens,
        settings.search.seed,
    )


def _messages(prefix: str | None, content: str) -> list[dict]:
    # the marker (loadtest/bodies.py) goes at the start of the first message not all prompts share:
    # the user's, after a shared system prefix
    user = [{"role": "user", "content": content}]
    return ([{"role": "system", "content": prefix}] if prefix else []) + user


def build_prompts(
    tokenizer: ServerTokenizer,
    input_tokens: Lengths,
    output_tokens: Lengths,
    n_prompts: int,
    shared_prefix_tokens: int,
    seed: int,
) -> Prompts:
    rng = random.Random(seed)
    pool_words = int(1.5 * (input_tokens.high + shared_prefix_tokens)) + 200
    pool = tokenizer.ids(" ".join(rng.choice(WORDS) for _ in range(pool_words)))
    prefix = tokenizer.text(pool[:shared_prefix_tokens]) if shared_prefix_tokens else None
    marker = f"[{os.getpid():x}.{4096:x}] "  # as loadtest/bodies.py writes it, a typical length
    requests, drawn = [], []
    for _ in range(n_prompts):
        target = input_tokens.draw(rng)
        length = max(1, target - shared_prefix_tokens - 20)  # a first guess; the loop corrects it
        start = rng.randrange(shared_prefix_tokens, max(shared_prefix_tokens + 1, len(pool) - 1))
        text = ""
        for _ in range(6):
            piece = [pool[(start + k) % len(pool)] for k in range(length)]
            text = tokenizer.text(piece)
            count = tokenizer.chat_count(_messages(prefix, marker + text))
            if count == target or (count > target and length == 1):
                break
            length = max(1, length + target - count)
        completion = output_tokens.draw(rng)
        drawn.append((target, completion))
        requests.append(
            {
                "messages": _messages(prefix, text),
                "max_tokens": completion,
                "min_tokens": completion,
                "ignore_eos": True,
            }
        )
    order = list(range(len(requests)))
    return Prompts(requests, [prompt_hash(r) for r in requests], order, drawn_lengths=drawn)
