import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_QUEUED: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_SUCCEEDED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]

class RenderMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RENDER_AUTO: _ClassVar[RenderMode]
    RENDER_ALWAYS: _ClassVar[RenderMode]
    RENDER_NEVER: _ClassVar[RenderMode]

class JobEventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_EVENT_KIND_UNSPECIFIED: _ClassVar[JobEventKind]
    JOB_EVENT_KIND_SNAPSHOT: _ClassVar[JobEventKind]
    JOB_EVENT_KIND_STATE_CHANGED: _ClassVar[JobEventKind]
    JOB_EVENT_KIND_PAGE_INDEXED: _ClassVar[JobEventKind]
    JOB_EVENT_KIND_PAGE_SKIPPED: _ClassVar[JobEventKind]
    JOB_EVENT_KIND_PAGE_FAILED: _ClassVar[JobEventKind]
    JOB_EVENT_KIND_HEARTBEAT: _ClassVar[JobEventKind]
    JOB_EVENT_KIND_PAGE_UNCHANGED: _ClassVar[JobEventKind]
    JOB_EVENT_KIND_PAGE_REMOVED: _ClassVar[JobEventKind]

class SitemapMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SITEMAP_MODE_UNSPECIFIED: _ClassVar[SitemapMode]
    SITEMAP_MODE_INCLUDE: _ClassVar[SitemapMode]
    SITEMAP_MODE_ONLY: _ClassVar[SitemapMode]
    SITEMAP_MODE_SKIP: _ClassVar[SitemapMode]
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_QUEUED: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLED: JobState
RENDER_AUTO: RenderMode
RENDER_ALWAYS: RenderMode
RENDER_NEVER: RenderMode
JOB_EVENT_KIND_UNSPECIFIED: JobEventKind
JOB_EVENT_KIND_SNAPSHOT: JobEventKind
JOB_EVENT_KIND_STATE_CHANGED: JobEventKind
JOB_EVENT_KIND_PAGE_INDEXED: JobEventKind
JOB_EVENT_KIND_PAGE_SKIPPED: JobEventKind
JOB_EVENT_KIND_PAGE_FAILED: JobEventKind
JOB_EVENT_KIND_HEARTBEAT: JobEventKind
JOB_EVENT_KIND_PAGE_UNCHANGED: JobEventKind
JOB_EVENT_KIND_PAGE_REMOVED: JobEventKind
SITEMAP_MODE_UNSPECIFIED: SitemapMode
SITEMAP_MODE_INCLUDE: SitemapMode
SITEMAP_MODE_ONLY: SitemapMode
SITEMAP_MODE_SKIP: SitemapMode

class Job(_message.Message):
    __slots__ = ("id", "knowledge_base", "url", "state", "pages_discovered", "pages_done", "pages_failed", "pages_skipped", "chunks_indexed", "created_at", "started_at", "finished_at", "last_progress_at", "error", "max_pages", "max_depth", "include_patterns", "exclude_patterns", "cancel_requested", "pages_beyond_max_pages", "waiting_for", "render", "pages_unchanged", "pages_updated", "pages_added", "pages_removed", "full", "sitemap")
    ID_FIELD_NUMBER: _ClassVar[int]
    KNOWLEDGE_BASE_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PAGES_DISCOVERED_FIELD_NUMBER: _ClassVar[int]
    PAGES_DONE_FIELD_NUMBER: _ClassVar[int]
    PAGES_FAILED_FIELD_NUMBER: _ClassVar[int]
    PAGES_SKIPPED_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_INDEXED_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_PROGRESS_AT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    MAX_PAGES_FIELD_NUMBER: _ClassVar[int]
    MAX_DEPTH_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_PATTERNS_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_PATTERNS_FIELD_NUMBER: _ClassVar[int]
    CANCEL_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    PAGES_BEYOND_MAX_PAGES_FIELD_NUMBER: _ClassVar[int]
    WAITING_FOR_FIELD_NUMBER: _ClassVar[int]
    RENDER_FIELD_NUMBER: _ClassVar[int]
    PAGES_UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    PAGES_UPDATED_FIELD_NUMBER: _ClassVar[int]
    PAGES_ADDED_FIELD_NUMBER: _ClassVar[int]
    PAGES_REMOVED_FIELD_NUMBER: _ClassVar[int]
    FULL_FIELD_NUMBER: _ClassVar[int]
    SITEMAP_FIELD_NUMBER: _ClassVar[int]
    id: str
    knowledge_base: str
    url: str
    state: JobState
    pages_discovered: int
    pages_done: int
    pages_failed: int
    pages_skipped: int
    chunks_indexed: int
    created_at: _timestamp_pb2.Timestamp
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    last_progress_at: _timestamp_pb2.Timestamp
    error: str
    max_pages: int
    max_depth: int
    include_patterns: _containers.RepeatedScalarFieldContainer[str]
    exclude_patterns: _containers.RepeatedScalarFieldContainer[str]
    cancel_requested: bool
    pages_beyond_max_pages: int
    waiting_for: str
    render: RenderMode
    pages_unchanged: int
    pages_updated: int
    pages_added: int
    pages_removed: int
    full: bool
    sitemap: SitemapMode
    def __init__(self, id: _Optional[str] = ..., knowledge_base: _Optional[str] = ..., url: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., pages_discovered: _Optional[int] = ..., pages_done: _Optional[int] = ..., pages_failed: _Optional[int] = ..., pages_skipped: _Optional[int] = ..., chunks_indexed: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_progress_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., error: _Optional[str] = ..., max_pages: _Optional[int] = ..., max_depth: _Optional[int] = ..., include_patterns: _Optional[_Iterable[str]] = ..., exclude_patterns: _Optional[_Iterable[str]] = ..., cancel_requested: bool = ..., pages_beyond_max_pages: _Optional[int] = ..., waiting_for: _Optional[str] = ..., render: _Optional[_Union[RenderMode, str]] = ..., pages_unchanged: _Optional[int] = ..., pages_updated: _Optional[int] = ..., pages_added: _Optional[int] = ..., pages_removed: _Optional[int] = ..., full: bool = ..., sitemap: _Optional[_Union[SitemapMode, str]] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ("event_id", "kind", "job", "page_url", "detail", "chunks", "at")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    PAGE_URL_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    kind: JobEventKind
    job: Job
    page_url: str
    detail: str
    chunks: int
    at: _timestamp_pb2.Timestamp
    def __init__(self, event_id: _Optional[str] = ..., kind: _Optional[_Union[JobEventKind, str]] = ..., job: _Optional[_Union[Job, _Mapping]] = ..., page_url: _Optional[str] = ..., detail: _Optional[str] = ..., chunks: _Optional[int] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class StartCrawlRequest(_message.Message):
    __slots__ = ("url", "knowledge_base", "max_pages", "max_depth", "include_patterns", "exclude_patterns", "max_concurrent_requests", "render", "full", "sitemap")
    URL_FIELD_NUMBER: _ClassVar[int]
    KNOWLEDGE_BASE_FIELD_NUMBER: _ClassVar[int]
    MAX_PAGES_FIELD_NUMBER: _ClassVar[int]
    MAX_DEPTH_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_PATTERNS_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_PATTERNS_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENT_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    RENDER_FIELD_NUMBER: _ClassVar[int]
    FULL_FIELD_NUMBER: _ClassVar[int]
    SITEMAP_FIELD_NUMBER: _ClassVar[int]
    url: str
    knowledge_base: str
    max_pages: int
    max_depth: int
    include_patterns: _containers.RepeatedScalarFieldContainer[str]
    exclude_patterns: _containers.RepeatedScalarFieldContainer[str]
    max_concurrent_requests: int
    render: RenderMode
    full: bool
    sitemap: SitemapMode
    def __init__(self, url: _Optional[str] = ..., knowledge_base: _Optional[str] = ..., max_pages: _Optional[int] = ..., max_depth: _Optional[int] = ..., include_patterns: _Optional[_Iterable[str]] = ..., exclude_patterns: _Optional[_Iterable[str]] = ..., max_concurrent_requests: _Optional[int] = ..., render: _Optional[_Union[RenderMode, str]] = ..., full: bool = ..., sitemap: _Optional[_Union[SitemapMode, str]] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("knowledge_base", "state", "page_size", "page_token")
    KNOWLEDGE_BASE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    knowledge_base: str
    state: JobState
    page_size: int
    page_token: str
    def __init__(self, knowledge_base: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("job_id", "after_event_id")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    after_event_id: str
    def __init__(self, job_id: _Optional[str] = ..., after_event_id: _Optional[str] = ...) -> None: ...

class Source(_message.Message):
    __slots__ = ("url", "title", "chunk_count", "content_hash", "indexed_at")
    URL_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    CHUNK_COUNT_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    INDEXED_AT_FIELD_NUMBER: _ClassVar[int]
    url: str
    title: str
    chunk_count: int
    content_hash: str
    indexed_at: _timestamp_pb2.Timestamp
    def __init__(self, url: _Optional[str] = ..., title: _Optional[str] = ..., chunk_count: _Optional[int] = ..., content_hash: _Optional[str] = ..., indexed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Chunk(_message.Message):
    __slots__ = ("id", "index", "heading", "text", "anchor")
    ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    HEADING_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    ANCHOR_FIELD_NUMBER: _ClassVar[int]
    id: str
    index: int
    heading: str
    text: str
    anchor: str
    def __init__(self, id: _Optional[str] = ..., index: _Optional[int] = ..., heading: _Optional[str] = ..., text: _Optional[str] = ..., anchor: _Optional[str] = ...) -> None: ...

class ListSourcesRequest(_message.Message):
    __slots__ = ("knowledge_base",)
    KNOWLEDGE_BASE_FIELD_NUMBER: _ClassVar[int]
    knowledge_base: str
    def __init__(self, knowledge_base: _Optional[str] = ...) -> None: ...

class ListSourcesResponse(_message.Message):
    __slots__ = ("sources",)
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    sources: _containers.RepeatedCompositeFieldContainer[Source]
    def __init__(self, sources: _Optional[_Iterable[_Union[Source, _Mapping]]] = ...) -> None: ...

class GetSourceRequest(_message.Message):
    __slots__ = ("knowledge_base", "url")
    KNOWLEDGE_BASE_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    knowledge_base: str
    url: str
    def __init__(self, knowledge_base: _Optional[str] = ..., url: _Optional[str] = ...) -> None: ...

class SourceDetail(_message.Message):
    __slots__ = ("source", "text", "chunks", "fetched_at", "changed_at", "indexed_at", "etag", "last_modified")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    FETCHED_AT_FIELD_NUMBER: _ClassVar[int]
    CHANGED_AT_FIELD_NUMBER: _ClassVar[int]
    INDEXED_AT_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    LAST_MODIFIED_FIELD_NUMBER: _ClassVar[int]
    source: Source
    text: str
    chunks: _containers.RepeatedCompositeFieldContainer[Chunk]
    fetched_at: _timestamp_pb2.Timestamp
    changed_at: _timestamp_pb2.Timestamp
    indexed_at: _timestamp_pb2.Timestamp
    etag: str
    last_modified: str
    def __init__(self, source: _Optional[_Union[Source, _Mapping]] = ..., text: _Optional[str] = ..., chunks: _Optional[_Iterable[_Union[Chunk, _Mapping]]] = ..., fetched_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., changed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., indexed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., etag: _Optional[str] = ..., last_modified: _Optional[str] = ...) -> None: ...

class DeleteSourceRequest(_message.Message):
    __slots__ = ("knowledge_base", "url")
    KNOWLEDGE_BASE_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    knowledge_base: str
    url: str
    def __init__(self, knowledge_base: _Optional[str] = ..., url: _Optional[str] = ...) -> None: ...

class DeleteSourceResponse(_message.Message):
    __slots__ = ("chunks_deleted",)
    CHUNKS_DELETED_FIELD_NUMBER: _ClassVar[int]
    chunks_deleted: int
    def __init__(self, chunks_deleted: _Optional[int] = ...) -> None: ...

class KnowledgeBase(_message.Message):
    __slots__ = ("name", "chunk_count", "discord_guild_ids", "description", "answer_instructions", "page_count", "sources", "schedule", "created_at")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CHUNK_COUNT_FIELD_NUMBER: _ClassVar[int]
    DISCORD_GUILD_IDS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ANSWER_INSTRUCTIONS_FIELD_NUMBER: _ClassVar[int]
    PAGE_COUNT_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    name: str
    chunk_count: int
    discord_guild_ids: _containers.RepeatedScalarFieldContainer[str]
    description: str
    answer_instructions: str
    page_count: int
    sources: _containers.RepeatedCompositeFieldContainer[KnowledgeBaseSource]
    schedule: Schedule
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., chunk_count: _Optional[int] = ..., discord_guild_ids: _Optional[_Iterable[str]] = ..., description: _Optional[str] = ..., answer_instructions: _Optional[str] = ..., page_count: _Optional[int] = ..., sources: _Optional[_Iterable[_Union[KnowledgeBaseSource, _Mapping]]] = ..., schedule: _Optional[_Union[Schedule, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class KnowledgeBaseSource(_message.Message):
    __slots__ = ("url", "include_patterns", "exclude_patterns", "max_pages", "max_depth", "max_concurrent_requests", "render", "added_at", "last_job_id", "last_state", "last_pages_done", "last_pages_failed", "last_finished_at")
    URL_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_PATTERNS_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_PATTERNS_FIELD_NUMBER: _ClassVar[int]
    MAX_PAGES_FIELD_NUMBER: _ClassVar[int]
    MAX_DEPTH_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENT_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    RENDER_FIELD_NUMBER: _ClassVar[int]
    ADDED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_JOB_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_STATE_FIELD_NUMBER: _ClassVar[int]
    LAST_PAGES_DONE_FIELD_NUMBER: _ClassVar[int]
    LAST_PAGES_FAILED_FIELD_NUMBER: _ClassVar[int]
    LAST_FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    url: str
    include_patterns: _containers.RepeatedScalarFieldContainer[str]
    exclude_patterns: _containers.RepeatedScalarFieldContainer[str]
    max_pages: int
    max_depth: int
    max_concurrent_requests: int
    render: RenderMode
    added_at: _timestamp_pb2.Timestamp
    last_job_id: str
    last_state: JobState
    last_pages_done: int
    last_pages_failed: int
    last_finished_at: _timestamp_pb2.Timestamp
    def __init__(self, url: _Optional[str] = ..., include_patterns: _Optional[_Iterable[str]] = ..., exclude_patterns: _Optional[_Iterable[str]] = ..., max_pages: _Optional[int] = ..., max_depth: _Optional[int] = ..., max_concurrent_requests: _Optional[int] = ..., render: _Optional[_Union[RenderMode, str]] = ..., added_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_job_id: _Optional[str] = ..., last_state: _Optional[_Union[JobState, str]] = ..., last_pages_done: _Optional[int] = ..., last_pages_failed: _Optional[int] = ..., last_finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Schedule(_message.Message):
    __slots__ = ("knowledge_base", "every_seconds", "next_run_at")
    KNOWLEDGE_BASE_FIELD_NUMBER: _ClassVar[int]
    EVERY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_RUN_AT_FIELD_NUMBER: _ClassVar[int]
    knowledge_base: str
    every_seconds: int
    next_run_at: _timestamp_pb2.Timestamp
    def __init__(self, knowledge_base: _Optional[str] = ..., every_seconds: _Optional[int] = ..., next_run_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateKnowledgeBaseRequest(_message.Message):
    __slots__ = ("name", "description", "answer_instructions")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ANSWER_INSTRUCTIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    answer_instructions: str
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., answer_instructions: _Optional[str] = ...) -> None: ...

class UpdateKnowledgeBaseRequest(_message.Message):
    __slots__ = ("name", "description", "answer_instructions")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ANSWER_INSTRUCTIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    answer_instructions: str
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., answer_instructions: _Optional[str] = ...) -> None: ...

class GetKnowledgeBaseRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class RecrawlKnowledgeBaseRequest(_message.Message):
    __slots__ = ("knowledge_base",)
    KNOWLEDGE_BASE_FIELD_NUMBER: _ClassVar[int]
    knowledge_base: str
    def __init__(self, knowledge_base: _Optional[str] = ...) -> None: ...

class RecrawlKnowledgeBaseResponse(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ...) -> None: ...

class SetScheduleRequest(_message.Message):
    __slots__ = ("knowledge_base", "every_seconds")
    KNOWLEDGE_BASE_FIELD_NUMBER: _ClassVar[int]
    EVERY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    knowledge_base: str
    every_seconds: int
    def __init__(self, knowledge_base: _Optional[str] = ..., every_seconds: _Optional[int] = ...) -> None: ...

class ListSchedulesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListSchedulesResponse(_message.Message):
    __slots__ = ("schedules",)
    SCHEDULES_FIELD_NUMBER: _ClassVar[int]
    schedules: _containers.RepeatedCompositeFieldContainer[Schedule]
    def __init__(self, schedules: _Optional[_Iterable[_Union[Schedule, _Mapping]]] = ...) -> None: ...

class ListKnowledgeBasesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListKnowledgeBasesResponse(_message.Message):
    __slots__ = ("knowledge_bases",)
    KNOWLEDGE_BASES_FIELD_NUMBER: _ClassVar[int]
    knowledge_bases: _containers.RepeatedCompositeFieldContainer[KnowledgeBase]
    def __init__(self, knowledge_bases: _Optional[_Iterable[_Union[KnowledgeBase, _Mapping]]] = ...) -> None: ...

class SetKnowledgeBaseServersRequest(_message.Message):
    __slots__ = ("knowledge_base", "discord_guild_ids")
    KNOWLEDGE_BASE_FIELD_NUMBER: _ClassVar[int]
    DISCORD_GUILD_IDS_FIELD_NUMBER: _ClassVar[int]
    knowledge_base: str
    discord_guild_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, knowledge_base: _Optional[str] = ..., discord_guild_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteKnowledgeBaseRequest(_message.Message):
    __slots__ = ("knowledge_base",)
    KNOWLEDGE_BASE_FIELD_NUMBER: _ClassVar[int]
    knowledge_base: str
    def __init__(self, knowledge_base: _Optional[str] = ...) -> None: ...

class DeleteKnowledgeBaseResponse(_message.Message):
    __slots__ = ("chunks_deleted",)
    CHUNKS_DELETED_FIELD_NUMBER: _ClassVar[int]
    chunks_deleted: int
    def __init__(self, chunks_deleted: _Optional[int] = ...) -> None: ...

class AskRequest(_message.Message):
    __slots__ = ("question", "knowledge_base", "conversation_id", "top_k", "author")
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    KNOWLEDGE_BASE_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    question: str
    knowledge_base: str
    conversation_id: str
    top_k: int
    author: str
    def __init__(self, question: _Optional[str] = ..., knowledge_base: _Optional[str] = ..., conversation_id: _Optional[str] = ..., top_k: _Optional[int] = ..., author: _Optional[str] = ...) -> None: ...

class Citation(_message.Message):
    __slots__ = ("number", "url", "title", "snippet", "score")
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    SNIPPET_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    number: int
    url: str
    title: str
    snippet: str
    score: float
    def __init__(self, number: _Optional[int] = ..., url: _Optional[str] = ..., title: _Optional[str] = ..., snippet: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class Answer(_message.Message):
    __slots__ = ("text", "citations", "conversation_id", "found", "query")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CITATIONS_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    FOUND_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    text: str
    citations: _containers.RepeatedCompositeFieldContainer[Citation]
    conversation_id: str
    found: bool
    query: str
    def __init__(self, text: _Optional[str] = ..., citations: _Optional[_Iterable[_Union[Citation, _Mapping]]] = ..., conversation_id: _Optional[str] = ..., found: bool = ..., query: _Optional[str] = ...) -> None: ...

class AskStreamResponse(_message.Message):
    __slots__ = ("delta", "answer")
    DELTA_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    delta: str
    answer: Answer
    def __init__(self, delta: _Optional[str] = ..., answer: _Optional[_Union[Answer, _Mapping]] = ...) -> None: ...

class ClearConversationRequest(_message.Message):
    __slots__ = ("conversation_id",)
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    def __init__(self, conversation_id: _Optional[str] = ...) -> None: ...

class ClearConversationResponse(_message.Message):
    __slots__ = ("cleared",)
    CLEARED_FIELD_NUMBER: _ClassVar[int]
    cleared: bool
    def __init__(self, cleared: bool = ...) -> None: ...

class ListFeedbackRequest(_message.Message):
    __slots__ = ("knowledge_base", "page_size", "page_token")
    KNOWLEDGE_BASE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    knowledge_base: str
    page_size: int
    page_token: str
    def __init__(self, knowledge_base: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class FeedbackEntry(_message.Message):
    __slots__ = ("answer_id", "question", "answer", "cited_urls", "up", "down", "knowledge_base", "created_at")
    ANSWER_ID_FIELD_NUMBER: _ClassVar[int]
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    CITED_URLS_FIELD_NUMBER: _ClassVar[int]
    UP_FIELD_NUMBER: _ClassVar[int]
    DOWN_FIELD_NUMBER: _ClassVar[int]
    KNOWLEDGE_BASE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    answer_id: str
    question: str
    answer: str
    cited_urls: _containers.RepeatedScalarFieldContainer[str]
    up: int
    down: int
    knowledge_base: str
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, answer_id: _Optional[str] = ..., question: _Optional[str] = ..., answer: _Optional[str] = ..., cited_urls: _Optional[_Iterable[str]] = ..., up: _Optional[int] = ..., down: _Optional[int] = ..., knowledge_base: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SourceFeedback(_message.Message):
    __slots__ = ("url", "up", "down")
    URL_FIELD_NUMBER: _ClassVar[int]
    UP_FIELD_NUMBER: _ClassVar[int]
    DOWN_FIELD_NUMBER: _ClassVar[int]
    url: str
    up: int
    down: int
    def __init__(self, url: _Optional[str] = ..., up: _Optional[int] = ..., down: _Optional[int] = ...) -> None: ...

class ListFeedbackResponse(_message.Message):
    __slots__ = ("entries", "sources", "next_page_token")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[FeedbackEntry]
    sources: _containers.RepeatedCompositeFieldContainer[SourceFeedback]
    next_page_token: str
    def __init__(self, entries: _Optional[_Iterable[_Union[FeedbackEntry, _Mapping]]] = ..., sources: _Optional[_Iterable[_Union[SourceFeedback, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListUnansweredRequest(_message.Message):
    __slots__ = ("knowledge_base", "since")
    KNOWLEDGE_BASE_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    knowledge_base: str
    since: _timestamp_pb2.Timestamp
    def __init__(self, knowledge_base: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class UnansweredCluster(_message.Message):
    __slots__ = ("count", "examples", "latest_at")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    LATEST_AT_FIELD_NUMBER: _ClassVar[int]
    count: int
    examples: _containers.RepeatedScalarFieldContainer[str]
    latest_at: _timestamp_pb2.Timestamp
    def __init__(self, count: _Optional[int] = ..., examples: _Optional[_Iterable[str]] = ..., latest_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListUnansweredResponse(_message.Message):
    __slots__ = ("clusters", "questions")
    CLUSTERS_FIELD_NUMBER: _ClassVar[int]
    QUESTIONS_FIELD_NUMBER: _ClassVar[int]
    clusters: _containers.RepeatedCompositeFieldContainer[UnansweredCluster]
    questions: int
    def __init__(self, clusters: _Optional[_Iterable[_Union[UnansweredCluster, _Mapping]]] = ..., questions: _Optional[int] = ...) -> None: ...

class GetQuestionStatsRequest(_message.Message):
    __slots__ = ("knowledge_base", "since")
    KNOWLEDGE_BASE_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    knowledge_base: str
    since: _timestamp_pb2.Timestamp
    def __init__(self, knowledge_base: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class QuestionDay(_message.Message):
    __slots__ = ("day", "questions", "answered", "answered_rate", "up", "down", "up_rate", "handed_off", "solved", "solved_without_staff")
    DAY_FIELD_NUMBER: _ClassVar[int]
    QUESTIONS_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_RATE_FIELD_NUMBER: _ClassVar[int]
    UP_FIELD_NUMBER: _ClassVar[int]
    DOWN_FIELD_NUMBER: _ClassVar[int]
    UP_RATE_FIELD_NUMBER: _ClassVar[int]
    HANDED_OFF_FIELD_NUMBER: _ClassVar[int]
    SOLVED_FIELD_NUMBER: _ClassVar[int]
    SOLVED_WITHOUT_STAFF_FIELD_NUMBER: _ClassVar[int]
    day: str
    questions: int
    answered: int
    answered_rate: float
    up: int
    down: int
    up_rate: float
    handed_off: int
    solved: int
    solved_without_staff: int
    def __init__(self, day: _Optional[str] = ..., questions: _Optional[int] = ..., answered: _Optional[int] = ..., answered_rate: _Optional[float] = ..., up: _Optional[int] = ..., down: _Optional[int] = ..., up_rate: _Optional[float] = ..., handed_off: _Optional[int] = ..., solved: _Optional[int] = ..., solved_without_staff: _Optional[int] = ...) -> None: ...

class QuestionStats(_message.Message):
    __slots__ = ("days", "total")
    DAYS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    days: _containers.RepeatedCompositeFieldContainer[QuestionDay]
    total: QuestionDay
    def __init__(self, days: _Optional[_Iterable[_Union[QuestionDay, _Mapping]]] = ..., total: _Optional[_Union[QuestionDay, _Mapping]] = ...) -> None: ...
