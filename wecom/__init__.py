"""WeCom (企业微信): API client, callback crypto and receiver, event registry, simulator.

This package knows nothing of coupons, merchants or the marketplace; domains reach it
through the client and register event handlers in ``wecom.events.registry``.
"""
