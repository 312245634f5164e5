"""Where a job lives in Redis.

Keys (P = settings.key_prefix, J = job id):
  P:jobs          sorted set of job ids scored by creation time (for ListJobs, newest first)
  P:job:J         hash: the job record (fields of JobRecord, plus `outstanding` and `event_seq`)
  P:job:J:events  stream: the event log; entry ids are `<seq>-0`, so the event id is the sequence number
  P:job:J:seen    hash: url -> url of the page that reserved it ("" for the seed)
  P:job:J:done    set: urls whose outcome is counted
  P:job:J:hashes  hash: content hash -> url of the first page with that content
"""

from __future__ import annotations

__all__ = ["JobKeys"]


class JobKeys:
    """The key names of every job under one prefix, so the store and the watcher cannot drift apart."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.index = f"{prefix}:jobs"

    def job(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def events(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:events"

    def seen(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:seen"

    def done(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:done"

    def hashes(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:hashes"
