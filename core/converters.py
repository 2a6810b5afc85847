"""URL converters: Flask's ``int`` replaced app-wide by one bounded to PostgreSQL's
``integer`` (1..2147483647), so every ``<int:...>`` route answers 404 for an id no row can
have (``/m/s/2147483648`` used to be a database error on PostgreSQL, 25 digits one on
SQLite too). Registered by the app factory before any blueprint (rules pick their converter
when they are added)."""
from __future__ import annotations

from flask import Flask
from werkzeug.routing import IntegerConverter

from core.bounds import MAX_INT, MIN_ID


class BoundedIntConverter(IntegerConverter):
    """``<int:x>`` with ``min=1, max=2147483647`` unless a rule says otherwise."""

    def __init__(self, map, fixed_digits=0, min=MIN_ID, max=MAX_INT, signed=False):
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)


def init_app(app: Flask) -> None:
    app.url_map.converters["int"] = BoundedIntConverter
