"""Every Redis key and channel renderq uses, in one place."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    """Key names under one prefix, so several renderq deployments can share a Redis."""

    prefix: str = "renderq"

    @property
    def stream(self) -> str:
        """The job stream: one entry per job to run, holding only the job id."""
        return f"{self.prefix}:stream"

    @property
    def group(self) -> str:
        """The consumer group all workers read the stream through."""
        return f"{self.prefix}:workers"

    @property
    def finished_channel(self) -> str:
        """Pub/sub channel on which a worker announces the id of every job that ended."""
        return f"{self.prefix}:finished"

    def job(self, job_id: str) -> str:
        """Hash holding a job's request and status document."""
        return f"{self.prefix}:job:{job_id}"

    def input(self, job_id: str) -> str:
        """The uploaded image of an image job, kept until the job ends or expires."""
        return f"{self.prefix}:input:{job_id}"

    def result(self, job_id: str) -> str:
        """The rendered image bytes."""
        return f"{self.prefix}:result:{job_id}"
