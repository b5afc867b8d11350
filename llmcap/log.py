"""llmcap's diagnostics: one logger family ("llmcap", "llmcap.plan", ...), one format, on stderr.

    llmcap plan: bf16 failed to start: vLLM exited with code 1 while starting: RuntimeError: ...

Results and progress a person asked for (step lines, the answer, report paths) are the program's
output and go to stdout with print; everything about what went wrong goes through here. A bottom-
layer module: the standard library only.
"""

from __future__ import annotations

import logging
import sys


class _Format(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        # "llmcap.plan" reads "llmcap plan:", as a person would write it
        return f"{record.name.replace('.', ' ')}: {record.getMessage()}" + (
            "\n" + self.formatException(record.exc_info) if record.exc_info else ""
        )


def get_logger(name: str = "llmcap") -> logging.Logger:
    root = logging.getLogger("llmcap")
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_Format())
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        root.propagate = False  # Locust's root handler has its own format: ours are printed once, ours
    return logging.getLogger(name)
