"""AdminService: each method translates the request, calls the core, translates back.

Domain errors become status codes in one place (`_status_of`).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from ragcord import errors
from ragcord.aio import Executors, iterate_in_thread, run_in
from ragcord.answering.service import AskService
from ragcord.answering.types import Answer
from ragcord.bindings import KnowledgeBaseOwners
from ragcord.crawls import Enqueue, recrawl_knowledge_base, start_crawl
from ragcord.feedback import FeedbackStore
from ragcord.jobs import JobEvent, JobStore, JobWatcher
from ragcord.jobs.watcher import WatchLimitReached
from ragcord.knowledge.bases import (
    create_knowledge_base,
    delete_knowledge_base,
    get_knowledge_base,
    list_knowledge_bases,
    set_knowledge_base_servers,
)
from ragcord.knowledge.embedders import Embedder, NoEmbedder
from ragcord.knowledge.pages import PageRecords
from ragcord.knowledge.records import KnowledgeBaseRecords
from ragcord.knowledge.stores import Store
from ragcord.metrics import ANSWER_LATENCY
from ragcord.questions import QuestionLog, build_question_log, total
from ragcord.schedules import Schedules
from ragcord.settings import Settings
from ragcord.urls import validate_kb_name
from rpc import convert
from rpc.v1 import admin_pb2 as pb
from rpc.v1 import admin_pb2_grpc

log = logging.getLogger(__name__)

_Request = TypeVar("_Request", bound=Message)
_Response = TypeVar("_Response", bound=Message)
_T = TypeVar("_T")

Context = grpc.aio.ServicerContext
_EVENT_PBS = 4096  # converted events kept for WatchJob streams (a few jobs' windows)

_STATUS = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.Aborted: grpc.StatusCode.ABORTED,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.OutOfRange: grpc.StatusCode.OUT_OF_RANGE,
    errors.AnswerUnavailable: grpc.StatusCode.UNAVAILABLE,
    WatchLimitReached: grpc.StatusCode.RESOURCE_EXHAUSTED,
}


# The status message travels percent-encoded in a header (up to 12 bytes a character), and clients refuse
# headers over 8 KB: a message quoting a huge request value is cut in its middle; the advice at its end stays.
_MAX_DETAILS = 500


def _bounded(message: str) -> str:
    if len(message) <= _MAX_DETAILS:
        return message
    return f"{message[:150]} … ({len(message) - 450} characters cut) … {message[-300:]}"


def _status_of(exc: Exception) -> tuple[grpc.StatusCode, str]:
    for kind, code in _STATUS.items():
        if isinstance(exc, kind):
            return code, _bounded(str(exc))
    if isinstance(exc, errors.RagcordError):
        return grpc.StatusCode.FAILED_PRECONDITION, _bounded(str(exc))
    if isinstance(exc, ConnectionError | OSError) or type(exc).__module__.startswith("redis"):
        log.exception("backend unavailable")
        return grpc.StatusCode.UNAVAILABLE, f"a backend is unavailable ({type(exc).__name__}); try again"
    log.exception("unexpected error")
    return grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__}); the server log has the cause"


def _unary(
    method: Callable[[AdminServicer, _Request, Context[_Request, _Response]], Awaitable[_Response]],
) -> Callable[[AdminServicer, _Request, Context[_Request, _Response]], Coroutine[Any, Any, _Response]]:
    @functools.wraps(method)
    async def wrapper(
        self: AdminServicer, request: _Request, context: Context[_Request, _Response]
    ) -> _Response:
        try:
            return await method(self, request, context)
        except Exception as exc:  # noqa: BLE001 - every error reaches the caller as a status
            code, message = _status_of(exc)
            await context.abort(code, message)

    return wrapper


def _stream(
    method: Callable[[AdminServicer, _Request, Context[_Request, _Response]], AsyncIterator[_Response]],
) -> Callable[[AdminServicer, _Request, Context[_Request, _Response]], AsyncIterator[_Response]]:
    @functools.wraps(method)
    async def wrapper(
        self: AdminServicer, request: _Request, context: Context[_Request, _Response]
    ) -> AsyncIterator[_Response]:
        try:
            async for item in method(self, request, context):
                yield item
        except Exception as exc:  # noqa: BLE001
            code, message = _status_of(exc)
            await context.abort(code, message)

    return wrapper


def _job_id(job_id: str) -> str:
    """A job id the request must carry (StartCrawl returns it; ListJobs lists them)."""
    if not job_id:
        raise errors.InvalidArgument("job_id is required: StartCrawl returns it, ListJobs lists the jobs")
    return job_id


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    def __init__(
        self,
        settings: Settings,
        *,
        jobs: JobStore,
        watcher: JobWatcher,
        store: Store,
        enqueue: Enqueue,
        ask: AskService,
        feedback: FeedbackStore,
        owners: KnowledgeBaseOwners,
        executors: Executors | None = None,
        questions: QuestionLog | None = None,
        embedder: Embedder | None = None,
    ) -> None:
        self.settings = settings
        self.jobs = jobs
        self.watcher = watcher
        self.store = store
        self.enqueue = enqueue
        self.ask = ask
        self.feedback = feedback
        self.owners = owners
        # Knowledge base records, sources and schedules (issue 22): in the jobs' Redis, under their prefix.
        self.records = KnowledgeBaseRecords(jobs.redis, prefix=jobs.keys.prefix)
        self.schedules = Schedules(jobs.redis, prefix=jobs.keys.prefix)
        self.questions = questions or build_question_log(settings, feedback.redis)
        self.embedder = embedder  # for ListUnanswered (the process's embedder; None: keyword-only)
        # Incremental re-crawls (issue 22): what the crawls recorded of each page (GetSource shows it).
        self.pages = PageRecords(jobs.redis, prefix=settings.key_prefix)
        self._event_pbs: dict[tuple[str, str], pb.JobEvent] = {}
        # Redis and store calls on one pool, answers (model calls) on another: slow answers never
        # make a GetJob wait for a thread.
        self.executors = executors or Executors.create(
            io_threads=settings.io_threads, answer_threads=settings.answer_threads
        )

    async def _io(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T:
        return await run_in(self.executors.io, fn, *args, **kwargs)

    @_unary
    async def StartCrawl(
        self, request: pb.StartCrawlRequest, context: Context[pb.StartCrawlRequest, pb.Job]
    ) -> pb.Job:
        job = await self._io(
            start_crawl,
            self.settings,
            self.jobs,
            self.enqueue,
            url=request.url,
            knowledge_base=request.knowledge_base or self.settings.default_knowledge_base,
            max_pages=request.max_pages,
            max_depth=request.max_depth,
            include_patterns=list(request.include_patterns),
            exclude_patterns=list(request.exclude_patterns),
            max_concurrent_requests=request.max_concurrent_requests,
            render=convert.render_from_pb(request.render),
            full=request.full,
            sitemap=convert.sitemap_from_pb(request.sitemap),
        )
        log.info("started crawl %s of %s into %s", job.id, job.url, job.knowledge_base)
        return convert.job_to_pb(job)

    @_unary
    async def GetJob(self, request: pb.GetJobRequest, context: Context[pb.GetJobRequest, pb.Job]) -> pb.Job:
        return convert.job_to_pb(await self._io(self.jobs.get, _job_id(request.job_id)))

    @_unary
    async def ListJobs(
        self, request: pb.ListJobsRequest, context: Context[pb.ListJobsRequest, pb.ListJobsResponse]
    ) -> pb.ListJobsResponse:
        if request.page_size < 0 or request.page_size > 500:
            raise errors.InvalidArgument("page_size must be between 1 and 500 (0 = 50)")
        if request.knowledge_base:
            validate_kb_name(request.knowledge_base)
        if request.state not in pb.JobState.values():  # proto3 enums are open: any int32 arrives
            raise errors.InvalidArgument(
                f"state {request.state} is not a JobState; use one of {', '.join(pb.JobState.keys())}"
            )
        jobs, token = await self._io(
            self.jobs.list,
            knowledge_base=request.knowledge_base,
            state=convert.job_state_from_pb(request.state),
            page_size=request.page_size or 50,
            page_token=request.page_token,
        )
        return pb.ListJobsResponse(jobs=[convert.job_to_pb(j) for j in jobs], next_page_token=token)

    @_unary
    async def CancelJob(
        self, request: pb.CancelJobRequest, context: Context[pb.CancelJobRequest, pb.Job]
    ) -> pb.Job:
        return convert.job_to_pb(await self._io(self.jobs.cancel, _job_id(request.job_id)))

    @_stream
    async def WatchJob(
        self, request: pb.WatchJobRequest, context: Context[pb.WatchJobRequest, pb.JobEvent]
    ) -> AsyncIterator[pb.JobEvent]:
        cursor = request.after_event_id
        if cursor and not (cursor.isascii() and cursor.isdigit() and len(cursor) <= 19):
            raise errors.InvalidArgument(
                f"after_event_id {cursor[:40]!r} is not an event id; pass the event_id of the last event seen"
            )
        job_id = _job_id(request.job_id)
        async for event in self.watcher.watch(job_id, cursor):
            yield self._event_pb(job_id, event)

    def _event_pb(self, job_id: str, event: JobEvent) -> pb.JobEvent:
        """A logged event converted once for all its watchers (the conversion costs more than sending)."""
        if not event.event_id:
            return convert.event_to_pb(event)  # a snapshot or heartbeat: one per watcher, or rare
        key = (job_id, event.event_id)
        message = self._event_pbs.get(key)
        if message is None:
            message = self._event_pbs[key] = convert.event_to_pb(event)
            if len(self._event_pbs) > _EVENT_PBS:
                del self._event_pbs[next(iter(self._event_pbs))]  # the oldest converted
        return message

    def _kb(self, name: str) -> str:
        return validate_kb_name(name or self.settings.default_knowledge_base)

    def _existing_kb(self, name: str) -> str:
        """The knowledge base asked (the default when none is named), which must exist or be crawling."""
        kb = self._kb(name)
        known = self.store.knowledge_bases()
        if kb in known or self.jobs.active(kb):
            return kb
        default = "" if name else f" (the default, RAGCORD_DEFAULT_KNOWLEDGE_BASE={kb})"
        existing = ", ".join(known) if known else "none yet: StartCrawl makes one"
        raise errors.NotFound(f"knowledge base {kb!r}{default} does not exist; existing: {existing}")

    @_unary
    async def ListSources(
        self, request: pb.ListSourcesRequest, context: Context[pb.ListSourcesRequest, pb.ListSourcesResponse]
    ) -> pb.ListSourcesResponse:
        kb = await self._io(self._existing_kb, request.knowledge_base)
        sources = await self._io(self.store.list_sources, kb)
        return pb.ListSourcesResponse(sources=[convert.source_to_pb(s) for s in sources])

    @_unary
    async def GetSource(
        self, request: pb.GetSourceRequest, context: Context[pb.GetSourceRequest, pb.SourceDetail]
    ) -> pb.SourceDetail:
        if not request.url:
            raise errors.InvalidArgument("url is required; ListSources shows the indexed pages")
        kb = await self._io(self._existing_kb, request.knowledge_base)
        detail = await self._io(self.store.get_source, kb, request.url)
        record = await self._io(self.pages.get, kb, request.url)
        return convert.source_detail_to_pb(detail, record)

    @_unary
    async def DeleteSource(
        self,
        request: pb.DeleteSourceRequest,
        context: Context[pb.DeleteSourceRequest, pb.DeleteSourceResponse],
    ) -> pb.DeleteSourceResponse:
        if not request.url:
            raise errors.InvalidArgument("url is required; ListSources shows the indexed pages")
        kb = await self._io(self._existing_kb, request.knowledge_base)
        # The record first: a crash in between leaves the page without one, and the next crawl indexes it.
        await self._io(self.pages.delete, kb, request.url)
        deleted = await self._io(self.store.delete_source, kb, request.url)
        return pb.DeleteSourceResponse(chunks_deleted=deleted)

    @_unary
    async def ListKnowledgeBases(
        self,
        request: pb.ListKnowledgeBasesRequest,
        context: Context[pb.ListKnowledgeBasesRequest, pb.ListKnowledgeBasesResponse],
    ) -> pb.ListKnowledgeBasesResponse:
        bases = await self._io(list_knowledge_bases, self.store, self.owners, self.records)
        return pb.ListKnowledgeBasesResponse(knowledge_bases=[convert.knowledge_base_to_pb(b) for b in bases])

    @_unary
    async def SetKnowledgeBaseServers(
        self,
        request: pb.SetKnowledgeBaseServersRequest,
        context: Context[pb.SetKnowledgeBaseServersRequest, pb.KnowledgeBase],
    ) -> pb.KnowledgeBase:
        if not request.knowledge_base:
            raise errors.InvalidArgument("knowledge_base is required; ListKnowledgeBases shows them")
        for guild in request.discord_guild_ids:
            if not (guild.strip().isascii() and guild.strip().isdigit() and len(guild.strip()) <= 20):
                raise errors.InvalidArgument(
                    f"discord_guild_ids must be Discord server ids (numbers): {guild[:40]!r} is not one"
                )
        info = await self._io(
            set_knowledge_base_servers,
            self.store,
            self.owners,
            request.knowledge_base,
            list(request.discord_guild_ids),
        )
        log.info("knowledge base %s: Discord servers %s", info.name, sorted(info.servers) or "all (shared)")
        return convert.knowledge_base_to_pb(info)

    @_unary
    async def DeleteKnowledgeBase(
        self,
        request: pb.DeleteKnowledgeBaseRequest,
        context: Context[pb.DeleteKnowledgeBaseRequest, pb.DeleteKnowledgeBaseResponse],
    ) -> pb.DeleteKnowledgeBaseResponse:
        if not request.knowledge_base:
            raise errors.InvalidArgument("knowledge_base is required; ListKnowledgeBases shows them")
        deleted = await self._io(
            delete_knowledge_base,
            self.store,
            self.jobs,
            self.owners,
            request.knowledge_base,
            forget=self._forget_knowledge_base,
        )
        await self._io(self.pages.drop, request.knowledge_base)
        log.info("knowledge base %s deleted (%d chunks)", request.knowledge_base, deleted)
        return pb.DeleteKnowledgeBaseResponse(chunks_deleted=deleted)

    # -- knowledge bases that remember their sources; schedules (issue 22) ----------------------------------
    def _forget_knowledge_base(self, kb: str) -> bool:
        removed = self.records.delete(kb)
        return self.schedules.remove(kb) or removed

    def _kb_pb(self, kb: str) -> pb.KnowledgeBase:
        info = get_knowledge_base(self.store, self.records, self.owners, self.jobs, kb)
        return convert.knowledge_base_to_pb(info, self.schedules.get(kb))

    @staticmethod
    def _named(name: str, field: str = "name") -> str:
        if not name:
            raise errors.InvalidArgument(f"{field} is required; ListKnowledgeBases shows the knowledge bases")
        return validate_kb_name(name)

    @_unary
    async def CreateKnowledgeBase(
        self,
        request: pb.CreateKnowledgeBaseRequest,
        context: Context[pb.CreateKnowledgeBaseRequest, pb.KnowledgeBase],
    ) -> pb.KnowledgeBase:
        kb = self._named(request.name)

        def create() -> pb.KnowledgeBase:
            create_knowledge_base(
                self.store,
                self.records,
                self.owners,
                kb,
                description=request.description,
                answer_instructions=request.answer_instructions,
            )
            return self._kb_pb(kb)

        message = await self._io(create)
        log.info("knowledge base %s created", kb)
        return message

    @_unary
    async def UpdateKnowledgeBase(
        self,
        request: pb.UpdateKnowledgeBaseRequest,
        context: Context[pb.UpdateKnowledgeBaseRequest, pb.KnowledgeBase],
    ) -> pb.KnowledgeBase:
        kb = self._named(request.name)
        description = request.description if request.HasField("description") else None
        instructions = request.answer_instructions if request.HasField("answer_instructions") else None

        def update() -> pb.KnowledgeBase:
            self._kb_pb(kb)  # NotFound before anything is written
            self.records.update(kb, description=description, answer_instructions=instructions)
            return self._kb_pb(kb)

        return await self._io(update)

    @_unary
    async def GetKnowledgeBase(
        self,
        request: pb.GetKnowledgeBaseRequest,
        context: Context[pb.GetKnowledgeBaseRequest, pb.KnowledgeBase],
    ) -> pb.KnowledgeBase:
        return await self._io(self._kb_pb, self._named(request.name))

    @_unary
    async def RecrawlKnowledgeBase(
        self,
        request: pb.RecrawlKnowledgeBaseRequest,
        context: Context[pb.RecrawlKnowledgeBaseRequest, pb.RecrawlKnowledgeBaseResponse],
    ) -> pb.RecrawlKnowledgeBaseResponse:
        kb = self._named(request.knowledge_base, "knowledge_base")
        jobs = await self._io(recrawl_knowledge_base, self.settings, self.jobs, self.enqueue, kb)
        log.info("re-crawl of %s: %s", kb, ", ".join(j.id for j in jobs))
        return pb.RecrawlKnowledgeBaseResponse(jobs=[convert.job_to_pb(j) for j in jobs])

    @_unary
    async def SetSchedule(
        self, request: pb.SetScheduleRequest, context: Context[pb.SetScheduleRequest, pb.Schedule]
    ) -> pb.Schedule:
        kb = self._named(request.knowledge_base, "knowledge_base")

        def set_schedule() -> pb.Schedule:
            if request.every_seconds:
                get_knowledge_base(self.store, self.records, self.owners, self.jobs, kb)  # NotFound
            schedule = self.schedules.set(
                kb, request.every_seconds, min_seconds=self.settings.schedule_min_seconds
            )
            if schedule is None:
                return pb.Schedule(knowledge_base=kb)
            return convert.schedule_to_pb(schedule)

        message = await self._io(set_schedule)
        log.info("knowledge base %s: schedule every %ss", kb, request.every_seconds or "(removed)")
        return message

    @_unary
    async def ListSchedules(
        self,
        request: pb.ListSchedulesRequest,
        context: Context[pb.ListSchedulesRequest, pb.ListSchedulesResponse],
    ) -> pb.ListSchedulesResponse:
        schedules = await self._io(self.schedules.list)
        return pb.ListSchedulesResponse(schedules=[convert.schedule_to_pb(s) for s in schedules])

    # -- end of issue 22 knowledge bases ----------------------------------------------------------------

    @_unary
    async def Ask(self, request: pb.AskRequest, context: Context[pb.AskRequest, pb.Answer]) -> pb.Answer:
        started = time.perf_counter()
        kb = await self._io(self._existing_kb, request.knowledge_base)
        answer = await run_in(
            self.executors.answer,
            self.ask.ask,
            request.question,
            knowledge_base=kb,
            conversation_id=request.conversation_id,
            top_k=request.top_k,
            author=request.author,
        )
        ANSWER_LATENCY.labels("api").observe(time.perf_counter() - started)
        return convert.answer_to_pb(answer)

    @_stream
    async def AskStream(
        self, request: pb.AskRequest, context: Context[pb.AskRequest, pb.AskStreamResponse]
    ) -> AsyncIterator[pb.AskStreamResponse]:
        started = time.perf_counter()
        kb = await self._io(self._existing_kb, request.knowledge_base)

        def answer_stream() -> Iterator[str | Answer]:
            return self.ask.ask_stream(
                request.question,
                knowledge_base=kb,
                conversation_id=request.conversation_id,
                top_k=request.top_k,
                author=request.author,
            )

        async for item in iterate_in_thread(answer_stream, executor=self.executors.answer):
            if isinstance(item, Answer):
                ANSWER_LATENCY.labels("api").observe(time.perf_counter() - started)
                yield pb.AskStreamResponse(answer=convert.answer_to_pb(item))
            else:
                yield pb.AskStreamResponse(delta=item)

    @_unary
    async def ClearConversation(
        self,
        request: pb.ClearConversationRequest,
        context: Context[pb.ClearConversationRequest, pb.ClearConversationResponse],
    ) -> pb.ClearConversationResponse:
        if not request.conversation_id:
            raise errors.InvalidArgument("conversation_id is required")
        return pb.ClearConversationResponse(cleared=await self._io(self.ask.clear, request.conversation_id))

    @_unary
    async def ListFeedback(
        self,
        request: pb.ListFeedbackRequest,
        context: Context[pb.ListFeedbackRequest, pb.ListFeedbackResponse],
    ) -> pb.ListFeedbackResponse:
        if not 0 <= request.page_size <= 500:
            raise errors.InvalidArgument("page_size must be between 1 and 500 (0 = 50)")
        token = request.page_token
        if token and not (token.isascii() and token.isdigit() and len(token) <= 18):
            raise errors.InvalidArgument(
                "page_token is not valid; pass next_page_token from the last response"
            )
        kb = self._kb(request.knowledge_base)
        size = request.page_size or 50
        offset = int(request.page_token or 0)
        entries = await self._io(self.feedback.list, knowledge_base=kb, limit=size + 1, offset=offset)
        sources = await self._io(self.feedback.per_source, kb)
        return pb.ListFeedbackResponse(
            entries=[convert.feedback_to_pb(e) for e in entries[:size]],
            sources=[pb.SourceFeedback(url=s.url, up=s.up, down=s.down) for s in sources],
            next_page_token=str(offset + size) if len(entries) > size else "",
        )

    @_unary
    async def ListUnanswered(
        self,
        request: pb.ListUnansweredRequest,
        context: Context[pb.ListUnansweredRequest, pb.ListUnansweredResponse],
    ) -> pb.ListUnansweredResponse:
        kb = self._kb(request.knowledge_base)
        embedder = self.embedder or NoEmbedder()
        clusters = await self._io(
            self.questions.unanswered, kb, embedder, since=convert.since_from_pb(request)
        )
        return pb.ListUnansweredResponse(
            clusters=[convert.cluster_to_pb(c) for c in clusters], questions=sum(c.count for c in clusters)
        )

    @_unary
    async def GetQuestionStats(
        self,
        request: pb.GetQuestionStatsRequest,
        context: Context[pb.GetQuestionStatsRequest, pb.QuestionStats],
    ) -> pb.QuestionStats:
        kb = self._kb(request.knowledge_base)
        days = await self._io(self.questions.stats, kb, since=convert.since_from_pb(request))
        return pb.QuestionStats(
            days=[convert.question_day_to_pb(d) for d in days],
            total=convert.question_day_to_pb(total(days)),
        )
