"""The demo corp's identity, shared by the simulator and the app's local defaults."""

REAL_API_BASE = "https://qyapi.weixin.qq.com/cgi-bin/"
DEMO_CORP_ID = "ww5a9c2d4e6f708192"
DEMO_CONTACT_SECRET = "linli-demo-contact-secret-0123456789abcdef"
DEMO_CALLBACK_TOKEN = "LinliDemoToken2026"
DEMO_CALLBACK_AES_KEY = "bGlubGktZGVtby1hZXMta2V5LWZvci13ZWNvbS1jYWw"  # 43 chars
DEMO_AGENT_ID = "1000002"
