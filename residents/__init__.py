"""Diners ("residents"): WeCom relationships, taste profile and tags, mobile pages, handovers."""
