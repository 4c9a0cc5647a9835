"""The Slack Web API client a worker process shares (slack-sdk)."""

from __future__ import annotations

from slack_sdk import WebClient

from runtime.settings import Settings


def build_slack_client(settings: Settings) -> WebClient:
    """A bot-token client; ``QTC_SLACK_API_URL`` points it at the sandbox's emulator. The SDK's
    own retry handlers stay off: Temporal retries the activity, honouring Retry-After."""
    return WebClient(
        token=settings.slack_token,
        base_url=settings.slack_api_url or WebClient.BASE_URL,
        timeout=int(settings.slack_timeout_s),
        retry_handlers=[],
    )
