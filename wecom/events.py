"""A small registry: domain packages subscribe to WeCom events by (Event, ChangeType).

``wecom`` never imports a domain; domains import this registry and register handlers.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from typing import Callable

log = logging.getLogger(__name__)

Handler = Callable[[dict], None]


class EventRegistry:
    def __init__(self) -> None:
        self._handlers: dict[tuple[str, str | None], list[Handler]] = defaultdict(list)

    def on(self, event: str, change_type: str | None = None) -> Callable[[Handler], Handler]:
        """Register for one ChangeType, or for every ChangeType of ``event`` with None."""

        def decorator(func: Handler) -> Handler:
            if func not in self._handlers[(event, change_type)]:
                self._handlers[(event, change_type)].append(func)
            return func

        return decorator

    def handlers_for(self, payload: dict) -> list[Handler]:
        event = payload.get("Event") or payload.get("MsgType") or ""
        change = payload.get("ChangeType")
        found = list(self._handlers.get((event, change), []))
        if change is not None:
            found += self._handlers.get((event, None), [])
        return found

    def dispatch(self, payload: dict) -> int:
        handlers = self.handlers_for(payload)
        if not handlers:
            log.info("no handler for %s/%s", payload.get("Event"), payload.get("ChangeType"))
        for handler in handlers:
            handler(payload)
        return len(handlers)


registry = EventRegistry()
