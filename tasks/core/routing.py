"""Model-aware routing: which models a generate worker serves, and where a job stands.

Every generate job goes to its model's Celery queue (`tasks.names.generate_queue`); a
generate worker subscribes to the queues of the models it serves (IMAGINE_WORKER_MODELS,
default every catalogue model) and holds them loaded, so a job reaches a worker that
already has its model and switches stay rare. One worker serving everything behaves as a
single queue did.

The waiting line is still one sorted set (QUEUE_KEY); each model also keeps its waiting
jobs in a sorted set of its own (MODEL_QUEUE_KEY) with the same scores. A job's position
counts the jobs ahead of it that the workers able to take it could take first: those of
every model that a live worker serving the job's model also serves. That is one ZCOUNT
per such model, bounded by the catalogue, never a scan.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import redis

from settings import Settings
from settings.errors import ConfigError
from tasks.names import GENERATE_QUEUE, MODEL_QUEUE_KEY, generate_queue, queue_model


def served_models(settings: Settings) -> tuple[str, ...]:
    """The models a generate worker started with `settings` serves, in the order given.

    IMAGINE_WORKER_MODELS unset: every catalogue model, the default first. A name the
    catalogue does not know stops the worker with the known names listed.
    """
    known = tuple(settings.catalogue)
    wanted = settings.worker_models or known
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise ConfigError(
            f"IMAGINE_WORKER_MODELS={','.join(wanted)!r} names "
            f"{'models' if len(unknown) > 1 else 'a model'} not in the catalogue "
            f"({', '.join(unknown)}): the known models are {', '.join(known)} "
            "(IMAGINE_MODEL is `default`, the others come from IMAGINE_MODELS)"
        )
    return tuple(wanted)


def job_queue_name(model: str, catalogue: Iterable[str]) -> str:
    """The Celery queue a job of `model` is sent to: its model's, or "generate" for a name
    the catalogue does not know, so that a worker fails it with a readable error instead
    of it waiting in a queue nobody consumes."""
    return generate_queue(model) if model in catalogue else GENERATE_QUEUE


def worker_queues(models: Iterable[str]) -> list[str]:
    """The Celery queues a generate worker serving `models` consumes from."""
    return [generate_queue(model) for model in models]


def models_of(info: Mapping[str, object]) -> tuple[str, ...]:
    """The models a live worker serves, from its heartbeat; workers from before per-model
    queues list none and serve the default model through the generate queue."""
    models = info.get("models")
    if isinstance(models, list | tuple):
        return tuple(str(model) for model in models)
    queues = info.get("queues")
    if not isinstance(queues, list | tuple):
        return ()
    return tuple(m for q in queues if (m := queue_model(str(q))) is not None)


def serving(model: str, workers: Iterable[Mapping[str, object]]) -> list[Mapping[str, object]]:
    """The workers (heartbeat infos) that serve `model`."""
    return [info for info in workers if model in models_of(info)]


def competing_models(model: str, workers: Iterable[Mapping[str, object]]) -> list[str]:
    """The models whose waiting jobs a job of `model` waits behind: every model served by a
    live worker that serves `model` (just `model` when none does), `model` first."""
    found = dict.fromkeys([model])
    for info in serving(model, workers):
        found.update(dict.fromkeys(models_of(info)))
    return list(found)


def model_key(model: str) -> str:
    return MODEL_QUEUE_KEY.format(model)


def count_ahead(client: redis.Redis, score: float | str, models: Sequence[str]) -> int:
    """Waiting jobs of `models` with a score up to `score` (the job itself included;
    "+inf": all of them)."""
    with client.pipeline(transaction=False) as pipe:
        for model in models:
            pipe.zcount(model_key(model), "-inf", score)
        return sum(int(count) for count in pipe.execute())
