"""Slack front end: the Bolt app and its listeners, what the bot says, the Web API client,
status-message pacing and the delivery adapter."""
