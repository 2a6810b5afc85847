"""Regional statistics: daily rollups of what the domains tally (``core.tally``), kept by a
job, read by the manager's, the merchant's and the admin's dashboards and their CSV files.

``services.rollup`` moves tallies into the rollups (exactly once) and rebuilds them from the
raw tables; ``services.report`` answers a dashboard's questions over rollups plus the tallies
still waiting; ``jobs`` is the clock's entry point; ``views`` the pages."""
