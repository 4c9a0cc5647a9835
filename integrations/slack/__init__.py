"""Slack: tells the deal desk, finance and operators that a deal waits for them."""
