"""Keep credentials out of logs: httpx logs every request URL at INFO, and WeCom and WeChat
put the access token, the app secret and OAuth codes in the query string."""
from __future__ import annotations

import logging
import re

import httpx

SECRET_QUERY = re.compile(r"((?:access_token|refresh_token|corpsecret|secret|code)=)[^&\s\"']+")


def redact(text: str) -> str:
    return SECRET_QUERY.sub(r"\1***", text)


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(redact(str(a)) if isinstance(a, (httpx.URL, str)) else a for a in record.args)
        elif isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


def install(logger_name: str = "httpx") -> None:
    """Idempotent: one filter per logger (httpx for our requests; the simulator adds werkzeug's
    access log, which shows the URLs it was called with)."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, RedactSecrets) for f in logger.filters):
        logger.addFilter(RedactSecrets())
