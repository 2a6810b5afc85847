"""Residents fixtures: the live stack (app + WeCom simulator over HTTP, from tests/e2e) and a
recorder for the residents' signals."""
from __future__ import annotations

import pytest

from core import signals
from tests.support.stack import stack  # noqa: F401  (module-scoped live app + simulator)


class SignalLog:
    """Every contact_added / contact_closed / taste_changed sent while connected."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []
        self._receivers = []

    def connect(self) -> None:
        for name in ("contact_added", "contact_closed", "taste_changed"):
            def receiver(sender, _name=name, **kw):
                self.events.append((_name, kw))

            getattr(signals, name).connect(receiver)
            self._receivers.append((getattr(signals, name), receiver))

    def disconnect(self) -> None:
        for signal, receiver in self._receivers:
            signal.disconnect(receiver)

    def of(self, name: str, **match) -> list[dict]:
        return [kw for n, kw in self.events if n == name and all(kw.get(k) == v for k, v in match.items())]


@pytest.fixture
def signal_log():
    log = SignalLog()
    log.connect()
    yield log
    log.disconnect()
