"""The SMTP sink: an SMTP server (aiosmtpd) that keeps every message it accepts.

It speaks real SMTP (EHLO, MAIL, RCPT, DATA; AUTH is accepted without checking in the sandbox),
so ``smtplib`` talks to it exactly as to a mail relay. Messages are kept in memory (and written
through to a JSON file when the runner persists state) and listed by the Slack emulator's control
endpoints, ``GET /_sandbox/mail``. Faults: ``POST /_sandbox/mail/faults`` with
``{"rules": [{"rate_500": 1.0}]}`` answers DATA with ``451 4.3.0`` (a temporary failure a relay
gives when it cannot queue), ``rate_429`` with ``452 4.5.3`` (too many recipients / try later).
"""

from __future__ import annotations

import datetime as dt
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from sandbox.common import Faults, StateStore


class SmtpSink:
    """The aiosmtpd handler and the store of what it received."""

    def __init__(self, state_file: Path | None = None) -> None:
        self.store = StateStore(state_file, lambda: {"messages": []})
        self.faults = Faults()

    def protocol(self) -> SMTP:
        """One SMTP protocol instance per connection (``loop.create_server`` factory)."""
        return SMTP(self, hostname="smtp.sandbox.example", ident="QTC sandbox SMTP sink")

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        fault, _ = await self.faults.pick("DATA", "/smtp")
        if fault == "500":
            return "451 4.3.0 Temporary failure, try again later (sandbox fault)"
        if fault == "429":
            return "452 4.5.3 Too many messages, try again later (sandbox fault)"
        raw = envelope.original_content or envelope.content or b""
        data = raw if isinstance(raw, bytes) else raw.encode()
        parsed = message_from_bytes(data, policy=policy.default)
        body = parsed.get_body(preferencelist=("plain", "html"))
        record: dict[str, Any] = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "subject": str(parsed.get("Subject", "")).strip(),
            "message_id": str(parsed.get("Message-ID", "")).strip(),
            "headers": {key: str(value).strip() for key, value in parsed.items()},
            "body": body.get_content() if body is not None else "",
            "received_at": dt.datetime.now(dt.UTC).isoformat(),
        }
        with self.store.lock:
            self.store.data["messages"].append(record)
            self.store.save()
        return "250 2.0.0 Message accepted for delivery"

    def messages(self) -> list[dict[str, Any]]:
        with self.store.lock:
            return list(self.store.data["messages"])

    def reset(self) -> None:
        self.store.reset()
        self.faults.reset()
