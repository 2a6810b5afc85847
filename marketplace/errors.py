"""The one place where domain errors become HTTP: services raise ``core.errors`` kinds, never
HTTP exceptions, and a view that lets one through gets the status its kind means."""
from __future__ import annotations

from flask import Flask
from werkzeug.exceptions import BadRequest, Conflict, Forbidden, HTTPException, NotFound

from core import errors

STATUS_FOR: tuple[tuple[type[errors.DomainError], type[HTTPException]], ...] = (
    (errors.NotFound, NotFound),
    (errors.Forbidden, Forbidden),
    (errors.Conflict, Conflict),
    (errors.DomainError, BadRequest),  # Invalid and every other rule
)


def http_error_for(exc: errors.DomainError) -> HTTPException:
    for kind, http in STATUS_FOR:
        if isinstance(exc, kind):
            return http(description=str(exc.message) or None)
    raise TypeError(exc)  # unreachable: DomainError is last


def init_app(app: Flask) -> None:
    @app.errorhandler(errors.DomainError)
    def _domain_error(exc: errors.DomainError):
        # Re-dispatched as the HTTP error so the app's own 4xx pages render it.
        return app.handle_http_exception(http_error_for(exc))
