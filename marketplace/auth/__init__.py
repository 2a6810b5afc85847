"""Accounts, roles and sign-in (Flask-Login)."""
