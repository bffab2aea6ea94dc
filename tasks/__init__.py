"""The queue and its workers: knows jobs and Redis, not which front end a job came from."""
