"""What a worker counts when it ends a job: added to the metrics in the same script that ends
it (see `renderq.metrics`), so a job is counted once, by whichever worker ends it."""

from __future__ import annotations

from renderq.jobs import Job
from renderq.metrics import (
    CHILD_FAILURES,
    CHILDREN_FAILED,
    CHILDREN_STARTED,
    ENDED,
    QUEUE_WAIT,
    RENDER_DURATION,
    Increments,
)
from renderq.queue_protocol import Ending, JobField


def counts_for_end(job: Job, ending: Ending, rendered: bool, children_started: int) -> Increments:
    """The job's outcome, its queue wait and (when it was rendered) its render time, and the
    sandbox children started since the worker's last counted end."""
    counted = Increments()
    labels = {"kind": str(job.kind), "engine": job.engine}
    code = ending.fields.get(JobField.ERROR_CODE, "")
    outcome = "failed" if code else "done"
    counted.count(ENDED, {**labels, "outcome": outcome, "code": code})
    if job.started_at is not None:
        counted.observe(QUEUE_WAIT, labels, max(0.0, job.started_at - job.queued_at))
    if rendered:
        counted.observe(RENDER_DURATION, labels, ending.render_ms / 1000)
    if code in CHILD_FAILURES:
        counted.count(CHILDREN_FAILED, {"reason": CHILD_FAILURES[code]})
    counted.count(CHILDREN_STARTED, by=children_started)
    return counted
