"""Domain objects to protobuf messages and back."""

from __future__ import annotations

from typing import cast

from google.protobuf.timestamp_pb2 import Timestamp

from ragcord.answering.types import Answer
from ragcord.errors import InvalidArgument
from ragcord.feedback import FeedbackRecord
from ragcord.jobs import EventKind, JobEvent, JobRecord, JobState, RenderMode, SitemapMode
from ragcord.knowledge.bases import KnowledgeBaseInfo
from ragcord.knowledge.pages import PageRecord
from ragcord.knowledge.records import SourceRecord
from ragcord.knowledge.stores import SourceDetail, SourceInfo
from ragcord.questions import Cluster, DayStats
from ragcord.schedules import Schedule
from rpc.v1 import admin_pb2 as pb


def timestamp(value: float | None) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    ts.FromNanoseconds(int(value * 1e9))
    return ts


def job_state_to_pb(state: JobState) -> pb.JobState:
    # cast: protoc's .pyi gives EnumTypeWrapper.Value an int result; the number is a pb.JobState.
    return cast(pb.JobState, pb.JobState.Value(f"JOB_STATE_{state.value}"))


def job_state_from_pb(value: pb.JobState) -> JobState | None:
    if value == pb.JOB_STATE_UNSPECIFIED:
        return None
    return JobState(pb.JobState.Name(value).removeprefix("JOB_STATE_"))


def event_kind_to_pb(kind: EventKind) -> pb.JobEventKind:
    # cast: as in job_state_to_pb, Value's number is a pb.JobEventKind.
    return cast(pb.JobEventKind, pb.JobEventKind.Value(f"JOB_EVENT_KIND_{kind.value}"))


_RENDER_TO_PB = {
    RenderMode.AUTO: pb.RENDER_AUTO,
    RenderMode.ALWAYS: pb.RENDER_ALWAYS,
    RenderMode.NEVER: pb.RENDER_NEVER,
}
_RENDER_FROM_PB = {value: mode for mode, value in _RENDER_TO_PB.items()}


def render_to_pb(mode: RenderMode) -> pb.RenderMode:
    return _RENDER_TO_PB[mode]


def render_from_pb(value: int) -> RenderMode:
    """The request's RenderMode; InvalidArgument for a number this server does not know."""
    try:
        return _RENDER_FROM_PB[value]  # type: ignore[index]
    except KeyError:
        raise InvalidArgument(f"render {value} is not RENDER_AUTO, RENDER_ALWAYS or RENDER_NEVER") from None


def job_to_pb(job: JobRecord) -> pb.Job:
    return pb.Job(
        id=job.id,
        knowledge_base=job.knowledge_base,
        url=job.url,
        state=job_state_to_pb(job.state),
        pages_discovered=job.pages_discovered,
        pages_done=job.pages_done,
        pages_failed=job.pages_failed,
        pages_skipped=job.pages_skipped,
        chunks_indexed=job.chunks_indexed,
        created_at=timestamp(job.created_at),
        started_at=timestamp(job.started_at),
        finished_at=timestamp(job.finished_at),
        last_progress_at=timestamp(job.last_progress_at),
        error=job.error,
        max_pages=job.max_pages,
        max_depth=job.max_depth,
        include_patterns=job.include_patterns,
        exclude_patterns=job.exclude_patterns,
        cancel_requested=job.cancel_requested,
        pages_beyond_max_pages=job.pages_beyond_max_pages,
        waiting_for=job.waiting_for,
        render=render_to_pb(job.render),
        # Incremental re-crawls (issue 22, parts 1-2).
        pages_unchanged=job.pages_unchanged,
        pages_updated=job.pages_updated,
        pages_added=job.pages_added,
        pages_removed=job.pages_removed,
        full=job.full,
        sitemap=sitemap_to_pb(job.sitemap),
    )


# -- incremental re-crawls (issue 22) -----------------------------------------------------------------

_SITEMAP_TO_PB = {
    SitemapMode.INCLUDE: pb.SITEMAP_MODE_INCLUDE,
    SitemapMode.ONLY: pb.SITEMAP_MODE_ONLY,
    SitemapMode.SKIP: pb.SITEMAP_MODE_SKIP,
}
_SITEMAP_FROM_PB = {value: mode for mode, value in _SITEMAP_TO_PB.items()}


def sitemap_to_pb(mode: SitemapMode) -> pb.SitemapMode:
    return _SITEMAP_TO_PB[mode]


def sitemap_from_pb(value: int) -> SitemapMode:
    """The request's SitemapMode (0: include); InvalidArgument for a number this server does not know."""
    if value == pb.SITEMAP_MODE_UNSPECIFIED:
        return SitemapMode.INCLUDE
    try:
        return _SITEMAP_FROM_PB[value]  # type: ignore[index]
    except KeyError:
        raise InvalidArgument(
            f"sitemap {value} is not SITEMAP_MODE_INCLUDE, SITEMAP_MODE_ONLY or SITEMAP_MODE_SKIP"
        ) from None


def event_to_pb(event: JobEvent) -> pb.JobEvent:
    return pb.JobEvent(
        event_id=event.event_id,
        kind=event_kind_to_pb(EventKind(event.kind)),
        job=job_to_pb(event.job),
        page_url=event.page_url,
        detail=event.detail,
        chunks=event.chunks,
        at=timestamp(event.at),
    )


def source_to_pb(source: SourceInfo) -> pb.Source:
    return pb.Source(
        url=source.url,
        title=source.title,
        chunk_count=source.chunk_count,
        content_hash=source.content_hash,
        indexed_at=timestamp(source.indexed_at),
    )


def source_detail_to_pb(detail: SourceDetail, record: PageRecord | None = None) -> pb.SourceDetail:
    """The page's stored chunks, with what the crawls recorded of it (`record`) when there is a record."""
    message = pb.SourceDetail(
        source=source_to_pb(detail.source),
        text=detail.text,
        chunks=[
            pb.Chunk(id=c.id, index=c.chunk_index, heading=c.heading, text=c.text, anchor=c.anchor)
            for c in detail.chunks
        ],
    )
    if record is not None:
        message.etag = record.etag
        message.last_modified = record.last_modified
        for name in ("fetched_at", "changed_at", "indexed_at"):
            if value := getattr(record, name):
                getattr(message, name).CopyFrom(timestamp(value))
    return message


def answer_to_pb(answer: Answer) -> pb.Answer:
    return pb.Answer(
        text=answer.text,
        citations=[
            pb.Citation(number=c.number, url=c.url, title=c.title, snippet=c.snippet, score=c.score)
            for c in answer.citations
        ],
        conversation_id=answer.conversation_id,
        found=answer.found,
        query=answer.query,
    )


def feedback_to_pb(record: FeedbackRecord) -> pb.FeedbackEntry:
    return pb.FeedbackEntry(
        answer_id=record.answer_id,
        question=record.question,
        answer=record.answer,
        cited_urls=record.cited_urls,
        up=record.up,
        down=record.down,
        knowledge_base=record.knowledge_base,
        created_at=timestamp(record.created_at),
    )


def knowledge_base_to_pb(info: KnowledgeBaseInfo, schedule: Schedule | None = None) -> pb.KnowledgeBase:
    message = pb.KnowledgeBase(
        name=info.name,
        chunk_count=info.chunk_count,
        discord_guild_ids=sorted(info.servers, key=int),
        page_count=info.page_count,
        sources=[kb_source_to_pb(source, job) for source, job in info.sources],
    )
    if info.record is not None:
        message.description = info.record.description
        message.answer_instructions = info.record.answer_instructions
        if info.record.created_at is not None:
            message.created_at.FromNanoseconds(int(info.record.created_at * 1e9))
    if schedule is not None:
        message.schedule.CopyFrom(schedule_to_pb(schedule))
    return message


def kb_source_to_pb(source: SourceRecord, job: JobRecord | None) -> pb.KnowledgeBaseSource:
    message = pb.KnowledgeBaseSource(
        url=source.url,
        include_patterns=source.include_patterns,
        exclude_patterns=source.exclude_patterns,
        max_pages=source.max_pages,
        max_depth=source.max_depth,
        max_concurrent_requests=source.max_concurrent_requests,
        render=render_to_pb(RenderMode(source.render or "auto")),
        added_at=timestamp(source.added_at or None),
    )
    if job is not None:
        message.last_job_id = job.id
        message.last_state = job_state_to_pb(job.state)
        message.last_pages_done = job.pages_done
        message.last_pages_failed = job.pages_failed
        if job.finished_at is not None:
            message.last_finished_at.FromNanoseconds(int(job.finished_at * 1e9))
    return message


def schedule_to_pb(schedule: Schedule) -> pb.Schedule:
    return pb.Schedule(
        knowledge_base=schedule.knowledge_base,
        every_seconds=schedule.every_seconds,
        next_run_at=timestamp(schedule.next_run_at),
    )


def question_day_to_pb(day: DayStats) -> pb.QuestionDay:
    return pb.QuestionDay(
        day=day.day,
        questions=day.questions,
        answered=day.answered,
        answered_rate=day.answered_rate,
        up=day.up,
        down=day.down,
        up_rate=day.up_rate,
        handed_off=day.handed_off,
        solved=day.solved,
        solved_without_staff=day.solved_without_staff,
    )


def cluster_to_pb(cluster: Cluster) -> pb.UnansweredCluster:
    return pb.UnansweredCluster(
        count=cluster.count, examples=cluster.examples, latest_at=timestamp(cluster.latest_at)
    )


def since_from_pb(request: pb.ListUnansweredRequest | pb.GetQuestionStatsRequest) -> float:
    """The request's `since` as epoch seconds; 0 when unset."""
    if not request.HasField("since"):
        return 0.0
    since = request.since
    if not (_MIN_TIMESTAMP <= since.seconds <= _MAX_TIMESTAMP and 0 <= since.nanos < 1_000_000_000):
        raise InvalidArgument(
            f"since is not a valid time (seconds {since.seconds}, nanos {since.nanos}): "
            "give a time between the years 1 and 9999, e.g. a week ago"
        )
    return since.seconds + since.nanos / 1e9


_MIN_TIMESTAMP, _MAX_TIMESTAMP = -62_135_596_800, 253_402_300_799  # 0001-01-01, 9999-12-31 (protobuf's range)
