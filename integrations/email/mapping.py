"""A waiting deal as an e-mail. The Message-ID is derived from the notification key, so a mail
system that sees the same notification twice can tell it is one message."""

from __future__ import annotations

import hashlib
from email.message import EmailMessage

from qtc.ports import Notification

_ROLE = {"deal_desk": "Deal desk", "finance": "Finance", "operator": "Operators"}
_WHAT = {
    "pending_approval": "A quote waits for deal-desk approval.",
    "awaiting_invoice_review": "The first invoice waits for a finance review.",
    "needs_attention": "A step failed for good; the deal is parked until an operator resumes it.",
}


def message_id(key: str) -> str:
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@qtc.notifications>"


def email(
    notification: Notification,
    *,
    sender: str,
    to: list[str],
    review_url: str,
    web_ui_url: str,
) -> EmailMessage:
    prefix = {"reminder": "[Reminder] ", "escalation": "[Escalation] "}.get(notification.kind, "")
    who = _ROLE.get(notification.audience, notification.audience)
    mail = EmailMessage()
    mail["Subject"] = (
        f"{prefix}{who}: {notification.deal_id} ({notification.customer}) is waiting for you"
    )
    mail["From"] = sender
    mail["To"] = ", ".join(to)
    mail["Message-ID"] = message_id(notification.key)
    mail["X-Qtc-Notification-Key"] = notification.key
    waited = (
        f"It has been waiting {notification.waiting_hours:g} hours.\n\n"
        if notification.waiting_hours
        else ""
    )
    mail.set_content(
        f"{_WHAT.get(notification.stage, notification.stage)}\n\n"
        f"Deal: {notification.deal_id}\nCustomer: {notification.customer}\n"
        f"Stage: {notification.stage}\n{notification.summary}\n\n{waited}"
        f"Review page: {review_url}\nTemporal Web UI: {web_ui_url}\n"
    )
    return mail
