"""Signals other parts of the residents package (tags, campaigns) subscribe to.

Senders emit *after* their transaction committed, so a receiver may enqueue jobs that read
the new rows. Receivers must be cheap: they run inside the emitting job or request.
"""
from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

# kwargs: resident_id, member_id, store_id (None when unknown), first_time (bool)
contact_added = _signals.signal("resident-contact-added")
# kwargs: resident_id, member_id, reason ("del_external_contact" | "del_follow_user" | "transfer")
contact_closed = _signals.signal("resident-contact-closed")
# kwargs: resident_id — the taste profile changed (new or refreshed signals)
taste_changed = _signals.signal("resident-taste-changed")
