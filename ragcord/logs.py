"""Logging set-up, once per entry point: plain lines, or JSON with RAGCORD_LOG_JSON=true.

Every line goes through `redact`: the secret values the settings hold (the admin token, the Discord token,
the OpenAI and Weaviate keys, a password in a URL) never reach a log, whoever logs them (our code, a
library's debug line, an exception that carries a request's headers).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
import types
from collections.abc import Iterable
from urllib.parse import urlsplit

from pydantic import SecretStr

from ragcord.settings import Settings

REDACTED = "[redacted]"
_MIN_SECRET = 6  # shorter values would blank out ordinary words; no real token is this short

# The process's secrets: every entry point's settings add theirs (configure_logging, the model client).
# Process-wide on purpose: a log line or a model's reply may come from anywhere in the process.
_secrets: set[str] = set()
_lock = threading.Lock()


def secret_values(settings: Settings) -> set[str]:
    """The values in `settings` that must never be printed: SecretStr fields and passwords in URLs."""
    found: set[str] = set()
    for name in type(settings).model_fields:
        value = getattr(settings, name, None)
        if isinstance(value, SecretStr):
            found.add(value.get_secret_value())
        elif isinstance(value, str) and "://" in value:
            try:
                password = urlsplit(value).password
            except ValueError:
                password = None
            if password:
                found.add(password)
    return {v for v in found if len(v) >= _MIN_SECRET}


def remember_secrets(values: Iterable[str] | Settings) -> None:
    """Add to the secrets `redact` removes (a Settings: its `secret_values`)."""
    new = (
        secret_values(values)
        if isinstance(values, Settings)
        else {v for v in values if len(v) >= _MIN_SECRET}
    )
    with _lock:
        _secrets.update(new)


def known_secrets() -> list[str]:
    """The remembered secrets, longest first (so one that contains another is removed whole)."""
    with _lock:
        return sorted(_secrets, key=len, reverse=True)


def redact(text: str, extra: Iterable[str] = ()) -> str:
    """`text` with every known secret (and each of `extra`) replaced by [redacted]."""
    values = known_secrets()
    more = [v for v in extra if len(v) >= _MIN_SECRET]
    for secret in sorted({*values, *more}, key=len, reverse=True) if more else values:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


class RedactingFilter(logging.Filter):
    """Renders the record's message and traceback once, with the secrets removed."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not known_secrets():
            return True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken %-format: show what there is, still redacted
            message = f"{record.msg!r} {record.args!r}"
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info or record.exc_text:
            entry["exc"] = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
        return json.dumps(entry)


def _redacting_excepthook(
    kind: type[BaseException], value: BaseException, tb: types.TracebackType | None
) -> None:
    """An uncaught exception's traceback (printed outside logging), with the secrets removed."""
    import traceback

    text = "".join(traceback.format_exception(kind, value, tb))
    sys.stderr.write(redact(text))


def configure_logging(settings: Settings) -> None:
    remember_secrets(settings)
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    if settings.log_json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    for noisy in ("httpx", "httpcore", "urllib3", "lance", "lancedb"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    sys.excepthook = _redacting_excepthook
