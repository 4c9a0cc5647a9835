"""Slack Web API emulator (chat.postMessage, conversations.history, auth.test)."""
