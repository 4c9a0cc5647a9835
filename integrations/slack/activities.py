"""The notifier port on Slack: one ``chat.postMessage`` per notification.

Slack answers most errors with HTTP 200 and ``{"ok": false, "error": ...}``; they are sorted here
into what a retry can fix (rate limits, Slack's own failures) and what it cannot (a revoked token,
a missing scope, an unknown channel: the notification is given up and noted on the deal).
Duplicates are prevented one level up (``workers.notify``): a key already sent is not sent again.
"""

from __future__ import annotations

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from integrations.slack.mapping import message
from qtc import errors
from qtc.ports import Notification
from runtime.vendor_errors import from_http_status, non_retryable, retryable, unreachable

VENDOR = "Slack"
_AUTH = {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"}
_PERMISSION = {"missing_scope", "not_in_channel", "restricted_action", "is_archived"}
_RETRYABLE = {"internal_error", "fatal_error", "service_unavailable", "request_timeout"}


class SlackNotifier:
    name = "slack"

    def __init__(
        self,
        client: WebClient,
        *,
        channel: str,
        escalation_channel: str,
        review_url: str,
        web_ui_url: str,
    ) -> None:
        self._client = client
        self._channel = channel
        self._escalation_channel = escalation_channel
        self._review_url = review_url
        self._web_ui_url = web_ui_url

    def notify(self, notification: Notification) -> None:
        body = message(
            notification,
            self._review_url,
            self._web_ui_url.format(deal_id=notification.deal_id),
        )
        channels = [self._channel]
        if notification.escalate and self._escalation_channel not in channels:
            channels.append(self._escalation_channel)
        for channel in channels:
            self._post(channel, body)

    def _post(self, channel: str, body: dict[str, object]) -> None:
        try:
            self._client.chat_postMessage(channel=channel, **body)  # type: ignore[arg-type]
        except SlackApiError as exc:
            raise classify(exc) from exc
        except (SlackClientError, OSError) as exc:
            raise unreachable(VENDOR, exc) from exc


def classify(exc: SlackApiError) -> Exception:
    """A Slack Web API error as a retryable or non-retryable ``ApplicationError``."""
    response = exc.response
    code = str(response.get("error") or "unknown_error")
    status = response.status_code
    details = {"vendor": VENDOR, "status": status, "code": code}
    text = f"{VENDOR} refused chat.postMessage: {code}"
    if status == 429 or code == "ratelimited":
        delay = float(response.headers.get("Retry-After", "1") or 1)
        return retryable(errors.VENDOR_RATE_LIMITED, text, delay, details=details)
    if status >= 500 or code in _RETRYABLE:
        return from_http_status(VENDOR, max(status, 500), code, response.headers, code=code)
    if code in _AUTH:
        return non_retryable(errors.VENDOR_AUTHENTICATION, text, details=details)
    if code in _PERMISSION:
        return non_retryable(errors.VENDOR_PERMISSION, text, details=details)
    if code == "channel_not_found":
        return non_retryable(errors.VENDOR_NOT_FOUND, text, details=details)
    return non_retryable(errors.VENDOR_INVALID_REQUEST, text, details=details)
