"""The demo corp's identity, shared by the simulator and the app's local defaults."""

REAL_API_BASE = "https://qyapi.weixin.qq.com/cgi-bin/"
DEMO_CORP_ID = "ww5a9c2d4e6f708192"
DEMO_CONTACT_SECRET = "linli-demo-contact-secret-0123456789abcdef"
DEMO_CALLBACK_TOKEN = "LinliDemoToken2026"
DEMO_CALLBACK_AES_KEY = "bGlubGktZGVtby1hZXMta2V5LWZvci13ZWNvbS1jYWw"  # 43 chars
DEMO_AGENT_ID = "1000002"
# The demo WeChat official account (公众号) whose web OAuth identifies diners on our pages.
REAL_OA_API_BASE = "https://api.weixin.qq.com/"
REAL_OA_AUTHORIZE_URL = "https://open.weixin.qq.com/connect/oauth2/authorize"
DEMO_OA_APPID = "wx6c1e2d3f4a5b6c7d"
DEMO_OA_SECRET = "5f0c8e7d6b4a39281706f5e4d3c2b1a0"
