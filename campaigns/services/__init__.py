"""The campaigns domain's rules: audience (who, and why not), budget (every cap, in SQL),
lifecycle (drafts, the tenant lookup, the state machine) and the planner (arbitration,
digests, task chunks: plain functions). Each takes a session (the planner none) and never
commits."""
from campaigns.services import audience, budget, planner
from campaigns.services.audience import AudienceRule, Preview, preview
from campaigns.services.lifecycle import (
    CampaignInput,
    campaigns_visible_to,
    cancel,
    create_campaign,
    get_campaign_for,
    launch,
    move,
    pause,
    resume,
    update_campaign,
)

__all__ = [
    "AudienceRule", "CampaignInput", "Preview", "audience", "budget", "campaigns_visible_to", "cancel", "planner",
    "create_campaign", "get_campaign_for", "launch", "move", "pause", "preview", "resume", "update_campaign",
]
