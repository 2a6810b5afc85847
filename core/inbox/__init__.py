"""The WeCom event log: every accepted callback is a row before it is a job.

The row makes callbacks durable (a Redis outage loses nothing: ``jobs.requeue_pending``
finds unprocessed rows) and its unique digest is the last line of defence against
duplicates. ``models`` (the table), ``services`` (rules), ``jobs`` (the sink and RQ jobs).
"""
