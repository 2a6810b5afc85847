"""Targeted coupon campaigns: who may get which coupon, within every cap, and why.

A campaign (a merchant's for its stores, or a regional manager's for circles in their regions)
names coupon templates, an audience rule, channels, a send window and quiet hours, and the
reason it is sent. ``services`` holds the rules (audience, budget, the state machine) and
never commits; ``jobs`` are the RQ entry points; ``views`` the portal pages."""
