"""What the test packages share: servers and apps, factories per domain, the live stack and
the query counter. Test packages import from here (and their own package), never from each
other; fixtures reach a package through its conftest.py."""
