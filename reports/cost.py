"""What a million requests cost: one function, one formula.

    $ per 1M requests = $ per GPU-hour x GPUs / (RPS x 3600 s/h x utilization) x 10^6

`utilization` is the fraction of the hour the GPUs spend serving at the measured
rate; you pay for the whole hour either way. The reference run: 222 req/s on one
$2.40/h H100 is $3.00 per million requests at 100 % and $30.03 at 10 %.
"""

from __future__ import annotations


def usd_per_million_requests(rps: float, usd_per_gpu_hour: float, gpus: int = 1, utilization: float = 1.0) -> float:
    if rps <= 0:
        raise ValueError("rps must be positive")
    if not 0 < utilization <= 1:
        raise ValueError("utilization must be in (0, 1]")
    return usd_per_gpu_hour * gpus / (rps * 3600.0 * utilization) * 1e6


def usd_per_million_tokens(
    rps: float, tokens_per_request: float, usd_per_gpu_hour: float, gpus: int = 1, utilization: float = 1.0
) -> float:
    """Same cost spread over input + output tokens."""
    return usd_per_million_requests(rps, usd_per_gpu_hour, gpus, utilization) / tokens_per_request


def hosted_usd_per_million_requests(
    prompt_tokens: float, completion_tokens: float, input_usd_per_mtok: float, output_usd_per_mtok: float
) -> float:
    """A hosted API's list price for a million requests of this token shape (a floor: see the note)."""
    return prompt_tokens * input_usd_per_mtok + completion_tokens * output_usd_per_mtok
