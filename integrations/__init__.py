"""A merchant's integrations: API keys for its POS (and a manager's, for statistics), the
API's idempotency records, webhooks (to come). The HTTP surface is on the roof
(``marketplace.api.v1``); this floor holds the rows and the rules."""
