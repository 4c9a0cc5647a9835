"""structlog set-up: configured once at process start, JSON off a terminal, pretty on one."""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

import structlog

REDACTED = "**redacted**"
_SECRET_KEYS = frozenset(
    {
        "authorization",
        "api_key",
        "password",
        "secret",
        "token",
        "x-docusign-signature-1",
        "x-docusign-signature-2",
        "x-qtc-signature",
        "x-salesforce-signature",
        "stripe-signature",
        "idempotency_secret",
    }
)


# --- secret values ------------------------
MIN_SECRET_LENGTH = 8
"""Shorter registered values are ignored: redacting every "test" or "1234" in every line would
make logs unreadable, and a secret that short is not protecting anything anyway."""
# Credentials whose shape gives them away even when this process never configured them (a
# customer pasting a Stripe key into a note, a bearer token echoed by a vendor error).
_CREDENTIAL_SHAPES = re.compile(
    r"(?i:\bbearer\s+)[A-Za-z0-9\-._~+/]+=*"
    r"|\b(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{6,}"
    r"|\bwhsec_[0-9A-Za-z]{6,}"
)


class _SecretValues:
    """The process-wide set of secret values, compiled into one alternation.

    Registration is rare (once per settings object) and replaces the pattern in one assignment,
    so the processor reads it without a lock.
    """

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()
        self.pattern: re.Pattern[str] | None = None

    def add(self, values: Iterable[str]) -> None:
        with self._lock:
            fresh = {v for v in values if len(v) >= MIN_SECRET_LENGTH} - self._values
            if not fresh:
                return
            self._values |= fresh
            # Longest first, so a secret that contains another is redacted whole.
            ordered = sorted(self._values, key=len, reverse=True)
            self.pattern = re.compile("|".join(re.escape(v) for v in ordered))


_secret_values = _SecretValues()
_MORE_SECRET_KEYS = frozenset(
    {"cookie", "set-cookie", "proxy-authorization", "x-api-key", "private_key", "session_id"}
)


def register_secrets(values: Iterable[str]) -> None:
    """Redact these values wherever they appear in any string of any later log event.

    ``runtime.settings.Settings`` registers every secret it holds when it is built.
    """
    _secret_values.add(values)


def _is_secret_key(key: str) -> bool:
    lowered = key.lower()
    return (
        lowered in _SECRET_KEYS
        or lowered in _MORE_SECRET_KEYS
        or lowered.endswith(("_secret", "_token", "_password", "_private_key"))
        # DocuSign sends one signature header per active Connect key, up to 100 of them.
        or lowered.startswith("x-docusign-signature-")
    )


def _scrub(text: str) -> str:
    pattern = _secret_values.pattern
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    return _CREDENTIAL_SHAPES.sub(_redact_shape, text)


def _redact_shape(match: re.Match[str]) -> str:
    found = match.group(0)
    return "Bearer " + REDACTED if found[:6].lower() == "bearer" else REDACTED


def _redact(key: object, value: Any, depth: int = 0) -> Any:
    if isinstance(key, str | bytes) and _is_secret_key(
        key.decode("latin-1") if isinstance(key, bytes) else key
    ):
        return REDACTED
    if isinstance(value, str):
        return _scrub(value)
    if depth > 8:  # nested deeper than any log event we write; leave it to the renderer
        return value
    if isinstance(value, bytes):
        text = value.decode("utf-8", "backslashreplace")
        scrubbed = _scrub(text)
        return value if scrubbed == text else scrubbed
    if isinstance(value, Mapping):
        return {k: _redact(k, v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        if (
            len(value) == 2
            and isinstance(value[0], str | bytes)
            and _is_secret_key(
                value[0].decode("latin-1") if isinstance(value[0], bytes) else value[0]
            )
        ):
            # A header pair such as (b"authorization", b"Bearer ...").
            return (value[0], REDACTED) if isinstance(value, tuple) else [value[0], REDACTED]
        redacted = [_redact(None, item, depth + 1) for item in value]
        return tuple(redacted) if isinstance(value, tuple) else redacted
    return value


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Redact secrets from an event before it is rendered.

    A value is replaced when its key names a secret or a signature header (at any depth, and in
    ``(name, value)`` header pairs); any registered secret value, bearer token or Stripe key found
    inside a string, at any depth, is cut out of it. Runs after exceptions are formatted, so a
    secret in an exception message is caught too.
    """
    for key in list(event_dict):
        event_dict[key] = _redact(key, event_dict[key])
    return event_dict


def configure_logging(level: str = "INFO", json: bool | None = None) -> None:
    """Configure structlog and the stdlib root logger once for this process."""
    if json is None:
        json = not sys.stderr.isatty()
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=True)
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    # Exceptions are formatted before redaction so that a secret inside an exception message or
    # a traceback is redacted too; redaction is the last step before rendering.
    final: list[Any] = [structlog.processors.format_exc_info, redact_secrets, renderer]
    structlog.configure(
        processors=[*shared, *final],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            # remove_processors_meta: the raw LogRecord would otherwise be rendered, unredacted.
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *shared,
                *final,
            ],
            foreign_pre_chain=[],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request at INFO; the adapters log their own canonical line per call.
    # At DEBUG everything is shown, httpx included.
    # The Stripe SDK logs every request at INFO too (measured: 8 % of worker samples under load,
    # contending for the handler lock); the billing activities log one line per step instead.
    for chatty in ("httpx", "stripe"):
        logging.getLogger(chatty).setLevel(
            logging.NOTSET if root.level <= logging.DEBUG else logging.WARNING
        )
