"""The notification activity: one notification to every configured channel, each at most once.

Neither Slack's ``chat.postMessage`` nor SMTP takes an idempotency key, so the ledger store keeps
which (key, channel) pairs went out: a retried activity skips the channels that already sent, and
a channel that failed is retried alone. The one gap, a crash between a send and its record, would
repeat that one message; the e-mail's Message-ID (derived from the key) lets mail systems drop it.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog
from temporalio import activity

from qtc import ports
from runtime.ledger import LedgerStore

log = structlog.get_logger(__name__)


class NotificationFanOut:
    def __init__(self, notifiers: Sequence[ports.Notifier], store: LedgerStore) -> None:
        self._notifiers = list(notifiers)
        self._store = store

    @activity.defn(name=ports.ACT_SEND_NOTIFICATION)
    def send_notification(self, notification: ports.Notification) -> ports.NotificationSent:
        sent: list[str] = []
        failure: BaseException | None = None
        for notifier in self._notifiers:
            if self._store.notification_sent(notification.key, notifier.name):
                sent.append(notifier.name)
                continue
            try:
                notifier.notify(notification)
            except Exception as exc:  # each channel on its own; the first failure is raised below
                log.warning(
                    "notification failed",
                    channel=notifier.name,
                    key=notification.key,
                    error=str(exc),
                )
                failure = failure or exc
                continue
            self._store.record_notification(notification.key, notifier.name)
            sent.append(notifier.name)
        if failure is not None:
            raise failure
        return ports.NotificationSent(channels=sent)
