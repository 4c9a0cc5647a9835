"""The notifier port over SMTP: one message per notification, to the reviewers' addresses, and
to the escalation addresses as well when the notification escalates.

A refused recipient or sender (5xx) cannot be fixed by a retry; a temporary refusal (4xx), a
dropped connection or a timeout can. Duplicates are prevented one level up (``workers.notify``).
"""

from __future__ import annotations

import smtplib

from integrations.email.client import SmtpFactory
from integrations.email.mapping import email
from qtc import errors
from qtc.ports import Notification
from runtime.vendor_errors import non_retryable, retryable, unreachable

VENDOR = "SMTP server"


class EmailNotifier:
    name = "email"

    def __init__(
        self,
        connect: SmtpFactory,
        *,
        sender: str,
        to: list[str],
        escalation_to: list[str],
        review_url: str,
        web_ui_url: str,
    ) -> None:
        self._connect = connect
        self._sender = sender
        self._to = to
        self._escalation_to = escalation_to
        self._review_url = review_url
        self._web_ui_url = web_ui_url

    def notify(self, notification: Notification) -> None:
        recipients = list(self._to)
        if notification.escalate:
            recipients += [a for a in self._escalation_to if a not in recipients]
        if not recipients:
            raise non_retryable(
                errors.VENDOR_INVALID_REQUEST, "no e-mail recipients configured (QTC_EMAIL_TO)"
            )
        mail = email(
            notification,
            sender=self._sender,
            to=recipients,
            review_url=self._review_url,
            web_ui_url=self._web_ui_url.format(deal_id=notification.deal_id),
        )
        try:
            with self._connect() as smtp:
                smtp.send_message(mail)
        except smtplib.SMTPResponseException as exc:
            raise _classify(exc.smtp_code, str(exc.smtp_error)) from exc
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise _classify(max(codes), f"recipients refused: {sorted(exc.recipients)}") from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise unreachable(VENDOR, exc) from exc


def _classify(code: int, message: str) -> Exception:
    details = {"vendor": VENDOR, "status": code}
    text = f"{VENDOR} answered {code}: {message}"
    if code in (530, 534, 535):
        return non_retryable(errors.VENDOR_AUTHENTICATION, text, details=details)
    if 400 <= code < 500:
        return retryable(errors.VENDOR_UNAVAILABLE, text, details=details)
    return non_retryable(errors.VENDOR_INVALID_REQUEST, text, details=details)
