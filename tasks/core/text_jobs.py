"""Which jobs a language model works on before drawing (#16), and the early text message.

A job's text goes through a model unless it is `--raw`: translation when
IMAGINE_TRANSLATE_MODEL is set, expansion when it asks `--enhance` and IMAGINE_ENHANCE_MODEL
is set. With IMAGINE_TEXT_QUEUE the submit also sends PREPARE_TEXT_TASK to the `text` queue,
before the job's generate message, so a text worker has the translation cached by the time
a generate worker claims the job (tasks.worker.text_task, tasks.worker.text_prep).
"""

from __future__ import annotations

from celery import Celery

from generator.request import ImageRequest
from settings import Settings
from tasks.core.jobs import Job
from tasks.names import PREPARE_TEXT_TASK, TEXT_QUEUE


def needs_text(settings: Settings, request: ImageRequest) -> bool:
    """Whether a language model works on the request's text before it is drawn."""
    if request.raw:
        return False
    return bool(settings.translate_model) or (request.enhance and bool(settings.enhance_model))


def send_early(celery: Celery, settings: Settings, job: Job) -> None:
    """The text worker's message for `job`, when IMAGINE_TEXT_QUEUE is on and it needs one."""
    if settings.text_queue and needs_text(settings, job.request):
        celery.send_task(PREPARE_TEXT_TASK, args=[job.id], queue=TEXT_QUEUE)
