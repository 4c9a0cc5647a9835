"""A waiting deal as a Slack message: plain text for notifications, Block Kit for the channel,
and message metadata carrying the notification key (what was sent is findable in Slack)."""

from __future__ import annotations

from typing import Any

from qtc.ports import Notification

METADATA_EVENT_TYPE = "qtc_deal_waiting"
_ROLE = {"deal_desk": "Deal desk", "finance": "Finance", "operator": "Operators"}
_WHAT = {
    "pending_approval": "a quote waits for approval",
    "awaiting_invoice_review": "the first invoice waits for review",
    "needs_attention": "a step failed and the deal is parked",
}


def headline(notification: Notification) -> str:
    who = _ROLE.get(notification.audience, notification.audience)
    what = _WHAT.get(notification.stage, notification.stage)
    prefix = {"reminder": "Reminder: ", "escalation": "Escalation: "}.get(notification.kind, "")
    waited = f" (waiting {notification.waiting_hours:g} h)" if notification.waiting_hours else ""
    return f"{prefix}{who}: {what} for {notification.customer}, {notification.deal_id}{waited}"


def message(notification: Notification, review_url: str, web_ui_url: str) -> dict[str, Any]:
    """``chat.postMessage`` arguments but the channel."""
    title = headline(notification)
    return {
        "text": f"{title}. Review: {review_url} | Temporal: {web_ui_url}",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{title}*"}},
            {"type": "section", "text": {"type": "plain_text", "text": notification.summary}},
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open the review page"},
                        "url": review_url,
                        "action_id": "qtc_review",
                    },
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Temporal Web UI"},
                        "url": web_ui_url,
                        "action_id": "qtc_web_ui",
                    },
                ],
            },
        ],
        "metadata": {
            "event_type": METADATA_EVENT_TYPE,
            "event_payload": {
                "key": notification.key,
                "deal_id": notification.deal_id,
                "stage": notification.stage,
            },
        },
        "unfurl_links": False,
    }
