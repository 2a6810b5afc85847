"""Merchants: stores, staff and WeCom members, enrolment and approval, channel codes, portal."""
