"""Clients of docent's gateway: the Slack bot (`clients.slack`)."""
