"""Coupons: templates, issued coupons, redemption, campaigns and their dispatch jobs."""
