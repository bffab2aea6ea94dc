"""The shared core of the queue: jobs, submission and positions, storage, metrics and the
delivery registry; used by front ends and workers alike."""
