"""The ground floor: what every domain shares (database, settings, extensions, transactions,
i18n, the WeCom client accessor, the event inbox, signals, errors, money and local time).
Imports nothing above ``wecom``."""
