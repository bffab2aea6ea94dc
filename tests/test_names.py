"""The names in tasks/names.py are stored data: a deployment's Redis holds keys under them
and queued Celery messages carry the task and queue names, so an upgrade must not change
one by accident. Changing a value here means writing a migration too."""

from __future__ import annotations

from tasks import names


def test_names_keep_the_values_already_in_use() -> None:
    values = {name: value for name, value in vars(names).items()
              if name.isupper() and isinstance(value, str)}
    assert values == {
        "GENERATE_QUEUE": "generate",
        "DELIVER_QUEUE": "deliver",
        "DEFAULT_MODEL": "default",
        "MODEL_QUEUE_PREFIX": "generate.",
        "GENERATE_TASK": "imagine.generate",
        "DELIVER_TASK": "imagine.deliver",
        "DELIVER_PROGRESS_TASK": "imagine.deliver_progress",
        "JOB_KEY": "imagine:job:{}",
        "QUEUE_KEY": "imagine:queue",
        "MODEL_QUEUE_KEY": "imagine:queue:{}",
        "SEQ_KEY": "imagine:seq",
        "RUNNING_KEY": "imagine:running",
        "ACTIVE_KEY": "imagine:active:{}",
        "WEB_ACTIVE_KEY": "imagine:web-active",
        "DURATIONS_KEY": "imagine:durations",
        "BATCH_SIZES_KEY": "imagine:batch-sizes",
        "CANCEL_KEY": "imagine:cancel:{}",
        "EVENTS_CHANNEL": "imagine:events:{}",
        "WORKERS_KEY": "imagine:workers:{}",
        "WORKER_BEATS_KEY": "imagine:worker-beats",
        "WORKER_LOADED_KEY": "imagine:worker-loaded:{}",
        "REAPER_LOCK_KEY": "imagine:reaper-lock",
        "TICKET_KEY": "imagine:ticket:{}",
        "FAIR_CLOCK_KEY": "imagine:fair:clock",
        "FAIR_USER_KEY": "imagine:fair:user:{}",
        "PREVIEW_KEY": "imagine:preview:{}",
        "DELIVERED_KEY": "imagine:delivered:{}:{}",
        "DELIVERING_KEY": "imagine:delivering:{}:{}",
        "PROGRESS_PENDING_KEY": "imagine:progress-pending:{}",
        "DELIVERY_DUE_KEY": "imagine:delivery-due",
        "METRICS_JOBS_KEY": "imagine:metrics:jobs",
        "METRICS_GENERATION_KEY": "imagine:metrics:generation",
        "METRICS_CACHE_KEY": "imagine:metrics:cache",
        "METRICS_RETRIES_KEY": "imagine:metrics:delivery_retries",
        "METRICS_WEB_KEY": "imagine:metrics:web",
        "METRICS_MODEL_LOADS_KEY": "imagine:metrics:model_loads",
        "METRICS_MODEL_GENERATION_KEY": "imagine:metrics:model_generation",
        "METRICS_QUEUE_WAIT_KEY": "imagine:metrics:queue_wait",
        "METRICS_IMAGES_KEY": "imagine:metrics:images",
        "WORKER_GPU_KEY": "imagine:worker-gpu:{}",
        "IMAGE_SERVED_KEY": "imagine:image-served",
        "GC_LOCK_KEY": "imagine:gc-lock",
        "GC_TASK": "imagine.gc",
        "URL_CACHE_KEY": "imagine:url:{}",
        "GALLERY_KEY": "imagine:gallery",
        "RATELIMIT_KEY": "imagine:ratelimit:{}",
        "REGION_LINK_KEY": "imagine:region:{}",
        "RECALL_KEY": "imagine:recall:{}",
        "SLACK_EVENT_KEY": "imagine:slack:event:{}",
        "SLACK_INTAKE_KEY": "imagine:slack:intake",
        "SLACK_STATUS_LOCK_KEY": "imagine:slack:status-lock:{}",
        "SLACK_STATUS_FINAL_KEY": "imagine:slack:status-final:{}",
        "SLACK_STATUS_THROTTLE_KEY": "imagine:slack:status-throttle:{}",
        "SLACK_PROGRESS_PACE_KEY": "imagine:slack:progress-pace:{}",
        "SLACK_PROGRESS_PAUSE_KEY": "imagine:slack:progress-pause:{}",
        "DISCORD_WAIT_KEY": "imagine:discord:wait:{}",
        "DISCORD_STATUS_LOCK_KEY": "imagine:discord:status-lock:{}",
        "DISCORD_STATUS_FINAL_KEY": "imagine:discord:status-final:{}",
        "DISCORD_PREVIEW_SHOWN_KEY": "imagine:discord:preview-shown:{}",
        "TEXT_QUEUE": "text",
        "PREPARE_TEXT_TASK": "imagine.prepare_text",
        "AUDIT_STREAM_KEY": "imagine:audit",
        "QUOTA_KEY": "imagine:quota:{}:{}",
        "QUOTA_OVERRIDE_KEY": "imagine:quota-override",
        "BANNED_KEY": "imagine:banned",
        "PAUSED_KEY": "imagine:paused",
        "BLOCKED_IMAGES_KEY": "imagine:blocked-images",
        "REPORTED_KEY": "imagine:reported:{}",
        "URL_JOB_KEY": "imagine:url-job:{}",
        "TRANSLATION_KEY": "imagine:translation:{}",
        "ENHANCEMENT_KEY": "imagine:enhancement:{}",
        "SLACK_USER_KEY": "imagine:slack:user:{}",
        "SLACK_GROUP_KEY": "imagine:slack:group:{}",
    }
    assert names.QUEUES == (names.GENERATE_QUEUE, names.DELIVER_QUEUE, names.TEXT_QUEUE)


def test_model_queues_keep_the_default_model_on_generate() -> None:
    assert names.generate_queue("default") == "generate"
    assert names.generate_queue("turbo") == "generate.turbo"
    assert [names.queue_model(q) for q in ("generate", "generate.turbo", "deliver", "generate.")
            ] == ["default", "turbo", None, None]


def test_no_two_names_share_a_key() -> None:
    keys = [value for name, value in vars(names).items()
            if name.endswith(("_KEY", "_CHANNEL")) and isinstance(value, str)]
    assert len(keys) == len(set(keys))
    assert all(key.startswith("imagine:") for key in keys)
