"""Workers run jobs queued before their function moved (README, "Upgrading")."""
from __future__ import annotations

import importlib

import pytest
from rq.job import JobStatus

from core.extensions import QUEUE_HIGH, get_queue
from marketplace.worker import MOVED_JOBS, drain


def _resolve(path: str):
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


@pytest.mark.parametrize("old, new", sorted(MOVED_JOBS.items()))
def test_every_moved_job_has_a_home(old, new):
    assert _resolve(old) is None, f"{old} still exists: the alias is not needed"
    assert callable(_resolve(new)), f"{new} is not a function"


def test_a_job_queued_under_its_old_path_runs(app):
    old = "marketplace.wecom_events.requeue_stranded_events"
    job = get_queue(QUEUE_HIGH).enqueue(old)
    drain(app)
    job.refresh()
    assert job.get_status() == JobStatus.FINISHED
    assert job.return_value() == 0  # nothing stranded: it ran the real sweep
