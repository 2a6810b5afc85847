"""Failpoints: named places where a crash test may kill this very process with SIGKILL (no
cleanup, no ``finally``), to prove that a job resumes correctly after dying at exactly that
point. Off unless ``LINLI_FAILPOINTS`` names them — comma-separated, ``name`` (the first time it
is reached) or ``name@N`` (the N-th time). Never set outside tests."""
from __future__ import annotations

import os
import signal
from collections import Counter

ENV = "LINLI_FAILPOINTS"
_reached: Counter[str] = Counter()


def hit(name: str) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    _reached[name] += 1
    for item in spec.split(","):
        point, _, nth = item.strip().partition("@")
        if point == name and _reached[name] == int(nth or 1):
            os.kill(os.getpid(), signal.SIGKILL)
