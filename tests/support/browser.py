"""Helpers for the browser tests, which share one live app per session."""
from __future__ import annotations

import itertools
import uuid

_seq = itertools.count(1)


def unique(prefix: str) -> str:
    """A name no other browser test in this session (or an earlier run's leftovers) uses."""
    return f"{prefix}{next(_seq)}{uuid.uuid4().hex[:6]}"
