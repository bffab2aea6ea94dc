"""The worker side: the Celery app and its tasks, the job runner that calls the generator,
and the worker heartbeat."""
