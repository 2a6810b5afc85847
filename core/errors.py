"""Domain errors: services raise these, never HTTP exceptions; the roof maps each family to
one status code in one place (``marketplace.errors``).

A message is user-facing text (usually lazy-translated); ``field`` names the form field it
belongs to, when there is one.
"""
from __future__ import annotations


class DomainError(Exception):
    """A rule said no. Maps to 400 unless a subclass says otherwise."""

    def __init__(self, message: object = "", field: str | None = None) -> None:
        super().__init__(str(message))
        self.message = message
        self.field = field


class NotFound(DomainError):
    """No such thing *for this caller*: another tenant's rows are not found either (404)."""


class Forbidden(DomainError):
    """The caller is known but may not do this (403)."""


class Invalid(DomainError):
    """The input breaks a rule (400)."""


class Conflict(DomainError):
    """The state changed under the caller: already redeemed, already running (409)."""
