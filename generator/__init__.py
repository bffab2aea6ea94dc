"""The diffusers side: loading models, sampling, PNG metadata; knows nothing of chat or queues."""
