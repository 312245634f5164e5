"""Where a job lives in Redis.

Keys (P = settings.key_prefix, J = job id):
  P:jobs                  sorted set of job ids scored by creation time (for ListJobs, newest first)
  P:jobs:active           sorted set of the jobs that have not ended (QUEUED, RUNNING), by creation time
  P:jobs:expiring         sorted set of ended jobs scored by when their keys expire (to trim P:jobs)
  P:jobs:counters         hash of monotonic counters over every job ever run (Prometheus counters)
  P:workers:loading       sorted set: worker name -> until when it says it is loading the embedding model
  P:job:{J}               hash: the job record (fields of JobRecord, plus `outstanding` and `event_seq`)
  P:job:{J}:events        stream: the event log; entry ids are `<seq>-0`: the event id is the sequence number
  P:job:{J}:seen          hash: url -> url of the page that reserved it ("" for the seed)   (scratch)
  P:job:{J}:done          set: urls whose outcome is counted                                 (scratch)
  P:job:{J}:hashes        hash: content hash -> url of the first page with that content       (scratch)
  P:job:{J}:beyond        set: urls refused because max_pages was reached                    (scratch)
  P:job:{J}:chunk-owners  hash, P:job:{J}:page-chunks hash: `knowledge/copies.py` CopyIndex   (scratch)
  P:job:{J}:blocks hash, P:job:{J}:block-pages set, P:job:{J}:block-chunks hash: `knowledge/furniture.py`
                          (read by the crawl's end after the job has ended, which deletes them; a TTL else)

Redis Cluster: every key of one job carries the hash tag `{J}`, so they share a slot and each job
script (which touches only that job's keys) runs there. The cross-job keys (P:jobs...) are never in a job
script's KEYS: JobStore updates them beside the script, each step safe to repeat (see store.py). Before the
tags, a job's keys were `P:job:J...`: `JobStore.migrate_hash_tags` renames those of an existing
deployment once, at start.

While a job runs none of its keys expire. When it ends, its record and events expire together after the
retention period (RAGCORD_JOB_RETENTION_DAYS) and its scratch keys, needed only while pages run, are deleted.
"""

from __future__ import annotations

__all__ = ["JobKeys", "job_key", "legacy_job_keys"]


def job_key(prefix: str, job_id: str) -> str:
    """`P:job:{J}`: the braces make J the key's hash tag, so all of a job's keys live in one cluster slot."""
    return f"{prefix}:job:{{{job_id}}}"


def legacy_job_keys(prefix: str, job_id: str) -> list[str]:
    """The names a job's keys had before the hash tags, in the order of `JobKeys.all_of`."""
    base = f"{prefix}:job:{job_id}"
    suffixes = ("", ":events", ":seen", ":done", ":hashes", ":beyond", ":chunk-owners", ":page-chunks")
    return [base + suffix for suffix in suffixes]


class JobKeys:
    """The key names of every job under one prefix, so the store and the watcher cannot drift apart."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.index = f"{prefix}:jobs"
        self.active = f"{prefix}:jobs:active"
        self.expiring = f"{prefix}:jobs:expiring"
        self.counters = f"{prefix}:jobs:counters"
        self.loading = f"{prefix}:workers:loading"

    def base(self, job_id: str) -> str:
        """The job's record key, which every other key of the job extends: `P:job:{J}`."""
        return job_key(self.prefix, job_id)

    def job(self, job_id: str) -> str:
        return self.base(job_id)

    def events(self, job_id: str) -> str:
        return f"{self.base(job_id)}:events"

    def seen(self, job_id: str) -> str:
        return f"{self.base(job_id)}:seen"

    def done(self, job_id: str) -> str:
        return f"{self.base(job_id)}:done"

    def hashes(self, job_id: str) -> str:
        return f"{self.base(job_id)}:hashes"

    def beyond(self, job_id: str) -> str:
        return f"{self.base(job_id)}:beyond"

    def copy_index(self, job_id: str) -> list[str]:
        """CopyIndex's keys of the job (`ragcord/knowledge/copies.py` names them through `job_key` too)."""
        return [f"{self.base(job_id)}:chunk-owners", f"{self.base(job_id)}:page-chunks"]

    def furniture(self, job_id: str) -> list[str]:
        """FurnitureIndex's keys of the job: block counts, counted pages, chunks that may be furniture."""
        return [
            f"{self.base(job_id)}:blocks",
            f"{self.base(job_id)}:block-pages",
            f"{self.base(job_id)}:block-chunks",
        ]

    def retained(self, job_id: str) -> list[str]:
        """What GetJob, ListJobs and WatchJob read: kept for the retention period after the job ends."""
        return [self.job(job_id), self.events(job_id)]

    def scratch(self, job_id: str) -> list[str]:
        """What only running pages need: deleted when the job ends."""
        return [self.seen(job_id), self.done(job_id), self.hashes(job_id), self.beyond(job_id)] + (
            self.copy_index(job_id)
        )

    def ending(self, job_id: str) -> list[str]:
        """KEYS of the scripts that may end the job (start_page, finish_page, cancel), in their order."""
        return [self.job(job_id), self.events(job_id), *self.scratch(job_id)]

    def all_of(self, job_id: str) -> list[str]:
        """Every key of one job."""
        return self.retained(job_id) + self.scratch(job_id)
