"""The campaigns domain's rules: audience (who, and why not), budget (every cap, in SQL) and
lifecycle (drafts, the tenant lookup, the state machine). Each takes a session and never
commits."""
from campaigns.services import audience, budget
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
    "AudienceRule", "CampaignInput", "Preview", "audience", "budget", "campaigns_visible_to", "cancel",
    "create_campaign", "get_campaign_for", "launch", "move", "pause", "preview", "resume", "update_campaign",
]
