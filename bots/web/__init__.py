"""Web front end: the Flask app with prompt URLs, the REST API and its OpenAPI document,
signing, rate limits, placeholders, health and metrics, and the webhook delivery adapter."""
