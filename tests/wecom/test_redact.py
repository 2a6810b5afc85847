"""Credentials never reach the logs: httpx logs request URLs, which carry WeCom's access
token and secret and WeChat's OAuth secret and code."""
from __future__ import annotations

import logging

import httpx

import wecom.client  # noqa: F401  (installs the filter, as any WeCom use does)
import wecom.oauth  # noqa: F401
from wecom.redact import RedactSecrets, redact


def test_query_secrets_are_masked():
    url = ("https://qyapi.weixin.qq.com/cgi-bin/gettoken?corpid=ww1&corpsecret=S3CR3T"
           "&access_token=TOKEN&appid=wx1&secret=OASECRET&code=ONCE&grant_type=authorization_code")
    masked = redact(url)
    for secret in ("S3CR3T", "TOKEN", "OASECRET", "ONCE"):
        assert secret not in masked
    assert "corpid=ww1" in masked and "appid=wx1" in masked


def test_httpx_log_records_are_filtered(caplog):
    logger = logging.getLogger("httpx")
    assert sum(isinstance(f, RedactSecrets) for f in logger.filters) == 1  # installed once
    with caplog.at_level(logging.INFO, logger="httpx"):
        logger.info('HTTP Request: %s %s "%s"', "GET",
                    httpx.URL("https://api.weixin.qq.com/sns/oauth2/access_token?secret=OASECRET&code=ONCE"),
                    "HTTP/1.1 200 OK")
    assert "OASECRET" not in caplog.text and "ONCE" not in caplog.text
    assert "secret=***" in caplog.text
