"""The Slack Web API emulator through slack-sdk and the SMTP sink through smtplib, and the two
notifiers (integrations/slack, integrations/email) against them."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage

import httpx
import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from temporalio.exceptions import ApplicationError

from integrations.email.activities import EmailNotifier
from integrations.slack.activities import SlackNotifier
from qtc import errors
from qtc.ports import Notification
from sandbox.runner import RunningEmulators

BOT_TOKEN = "xoxb-sandbox"


def slack(emulators: RunningEmulators, token: str = BOT_TOKEN) -> WebClient:
    return WebClient(token=token, base_url=f"{emulators.slack_url}/api/", retry_handlers=[])


def notification(**overrides: object) -> Notification:
    values: dict[str, object] = {
        "key": "qtc:deal-006X:awaiting_invoice_review:5:entered",
        "deal_id": "deal-006X",
        "stage": "awaiting_invoice_review",
        "audience": "finance",
        "kind": "entered",
        "customer": "Acme Robotics, Inc.",
        "summary": "first invoice 698000 usd on 2026-12-06",
    }
    values.update(overrides)
    return Notification.model_validate(values)


def test_slack_sdk_posts_a_message_the_emulator_lists_and_returns_in_history(
    reset_emulators: RunningEmulators,
) -> None:
    client = slack(reset_emulators)

    posted = client.chat_postMessage(
        channel="#qtc-reviews",
        text="hello",
        metadata={"event_type": "qtc_deal_waiting", "event_payload": {"key": "k1"}},
    )
    history = client.conversations_history(channel=posted["channel"], include_all_metadata=True)

    assert posted["ok"] is True and posted["channel"] == "C0QTCREVIEWS"
    assert history["messages"][0]["metadata"]["event_payload"] == {"key": "k1"}
    listed = httpx.get(f"{reset_emulators.slack_url}/_sandbox/messages").json()["messages"]
    assert [m["text"] for m in listed] == ["hello"]
    assert client.auth_test()["bot_id"] == "B0QTCBOT"


@pytest.mark.parametrize(
    ("token", "channel", "text", "code"),
    [
        ("xoxb-wrong", "#qtc-reviews", "hi", "invalid_auth"),
        ("xoxb-sandbox", "#nowhere", "hi", "channel_not_found"),
        ("xoxb-sandbox", "#qtc-reviews", "", "no_text"),
    ],
)
def test_slack_errors_are_ok_false_with_slacks_codes(
    reset_emulators: RunningEmulators, token: str, channel: str, text: str, code: str
) -> None:
    with pytest.raises(SlackApiError) as raised:
        slack(reset_emulators, token).chat_postMessage(channel=channel, text=text)

    assert raised.value.response.status_code == 200
    assert raised.value.response["error"] == code


def test_the_slack_notifier_links_the_review_page_and_escalates_to_a_second_channel(
    reset_emulators: RunningEmulators,
) -> None:
    notifier = SlackNotifier(
        slack(reset_emulators),
        channel="#qtc-reviews",
        escalation_channel="#qtc-escalations",
        review_url="http://qtc.example/review",
        web_ui_url="http://ui.example/namespaces/default/workflows/{deal_id}",
    )

    notifier.notify(notification(kind="escalation", escalate=True, waiting_hours=48))

    listed = httpx.get(f"{reset_emulators.slack_url}/_sandbox/messages").json()["messages"]
    assert [m["channel"] for m in listed] == ["C0QTCREVIEWS", "C0QTCESCALATE"]
    assert listed[0]["text"].startswith("Escalation: Finance: the first invoice waits for review")
    assert "http://qtc.example/review" in listed[0]["text"]
    assert "http://ui.example/namespaces/default/workflows/deal-006X" in listed[0]["text"]
    assert listed[0]["metadata"]["event_payload"]["key"] == notification().key


def test_a_rate_limited_slack_is_retryable_and_a_bad_token_is_not(
    reset_emulators: RunningEmulators,
) -> None:
    def notifier(token: str) -> SlackNotifier:
        return SlackNotifier(
            slack(reset_emulators, token),
            channel="#qtc-reviews",
            escalation_channel="#qtc-escalations",
            review_url="r",
            web_ui_url="w",
        )

    httpx.post(
        f"{reset_emulators.slack_url}/_sandbox/faults",
        json={"rules": [{"path": "chat.postMessage", "rate_429": 1.0, "retry_after_s": 3}]},
    ).raise_for_status()
    with pytest.raises(ApplicationError) as limited:
        notifier("xoxb-sandbox").notify(notification())
    httpx.post(f"{reset_emulators.slack_url}/_sandbox/faults", json={}).raise_for_status()
    with pytest.raises(ApplicationError) as refused:
        notifier("xoxb-revoked").notify(notification())

    assert (limited.value.type, limited.value.non_retryable) == (errors.VENDOR_RATE_LIMITED, False)
    assert limited.value.next_retry_delay is not None
    assert limited.value.next_retry_delay.total_seconds() == 3
    assert (refused.value.type, refused.value.non_retryable) == (
        errors.VENDOR_AUTHENTICATION,
        True,
    )


def test_the_smtp_sink_keeps_what_smtplib_sends(reset_emulators: RunningEmulators) -> None:
    mail = EmailMessage()
    mail["Subject"], mail["From"], mail["To"] = "hi", "a@example.com", "b@example.com"
    mail.set_content("body text")

    with smtplib.SMTP(reset_emulators.smtp_host, reset_emulators.smtp_port, timeout=10) as smtp:
        smtp.send_message(mail)

    [received] = httpx.get(f"{reset_emulators.slack_url}/_sandbox/mail").json()["messages"]
    assert received["rcpt_tos"] == ["b@example.com"]
    assert received["subject"] == "hi" and received["body"].strip() == "body text"


def test_the_email_notifier_mails_the_reviewers_and_escalates_to_more_addresses(
    reset_emulators: RunningEmulators,
) -> None:
    def connect() -> smtplib.SMTP:
        return smtplib.SMTP(reset_emulators.smtp_host, reset_emulators.smtp_port, timeout=10)

    notifier = EmailNotifier(
        connect,
        sender="qtc@example.com",
        to=["finance@example.com"],
        escalation_to=["cfo@example.com"],
        review_url="http://qtc.example/review",
        web_ui_url="http://ui.example/workflows/{deal_id}",
    )

    notifier.notify(notification())
    notifier.notify(notification(key="k-esc", kind="escalation", escalate=True))
    httpx.post(
        f"{reset_emulators.slack_url}/_sandbox/mail/faults", json={"rules": [{"rate_500": 1.0}]}
    ).raise_for_status()
    with pytest.raises(ApplicationError) as temporary:
        notifier.notify(notification(key="k-3"))

    first, second = httpx.get(f"{reset_emulators.slack_url}/_sandbox/mail").json()["messages"]
    assert first["rcpt_tos"] == ["finance@example.com"]
    assert "http://qtc.example/review" in first["body"]
    assert "http://ui.example/workflows/deal-006X" in first["body"]
    assert first["message_id"].endswith("@qtc.notifications>")
    assert second["rcpt_tos"] == ["finance@example.com", "cfo@example.com"]
    assert second["subject"].startswith("[Escalation] Finance: deal-006X")
    assert (temporary.value.type, temporary.value.non_retryable) == (
        errors.VENDOR_UNAVAILABLE,
        False,
    )
