"""The JSON API for merchants' POS systems and the operator (``v1``)."""
