"""Merchants' own errors: rules the merchant (or reviewer) can fix, so the roof maps them to
400 like every ``core.errors.Invalid``; views usually catch them first and show the message."""
from __future__ import annotations

from core.errors import Invalid


class ServiceError(Invalid):
    """A rule the user broke; ``field`` names the form input to show ``message`` on."""


class ChannelError(Invalid):
    """A channel-code rule the merchant can fix; the message is plain words for a flash."""
