"""Every name shared between processes: Redis keys and channels, Celery queues and tasks.

Writers and readers of a key often live in different processes (a front end stores, a
worker reads), so each name is declared once here and imported by both. The strings are
stored data: a deployment's Redis already holds job records, cached prompt URLs and delivery
marks under them, so renaming one here orphans that data; change a value only with a
migration. The whole keyspace is listed, front ends' keys included, so that no two parts
can pick the same key by accident.
"""

from __future__ import annotations

# --- Celery: queues, and the tasks routed to them --------------------------------------
GENERATE_QUEUE = "generate"  # GPU workers, one job at a time
DELIVER_QUEUE = "deliver"  # I/O workers, many threads
TEXT_QUEUE = "text"  # IMAGINE_TEXT_QUEUE: translation and enhancement before drawing (CPU)
QUEUES = (GENERATE_QUEUE, DELIVER_QUEUE, TEXT_QUEUE)
# Jobs of catalogue models other than `default` wait in their own queue, generate.<name>,
# so a worker takes only the models it serves; the default model keeps "generate", so
# messages of a deployment from before per-model queues keep flowing.
DEFAULT_MODEL = "default"
MODEL_QUEUE_PREFIX = GENERATE_QUEUE + "."

GENERATE_TASK = "imagine.generate"
DELIVER_TASK = "imagine.deliver"
DELIVER_PROGRESS_TASK = "imagine.deliver_progress"
PREPARE_TEXT_TASK = "imagine.prepare_text"
GC_TASK = "imagine.gc"  # image retention (tasks.core.retention), run on a deliver worker

# --- jobs and the queue ------------------------------------------------------------------
JOB_KEY = "imagine:job:{}"  # job id → the Job record (JSON), with a TTL
QUEUE_KEY = "imagine:queue"  # sorted set of waiting job ids, by submit order
MODEL_QUEUE_KEY = "imagine:queue:{}"  # model → its waiting job ids, QUEUE_KEY's scores
SEQ_KEY = "imagine:seq"  # counter giving that order
RUNNING_KEY = "imagine:running"  # set of job ids being drawn
ACTIVE_KEY = "imagine:active:{}"  # user key → set of that user's unfinished job ids
WEB_ACTIVE_KEY = "imagine:web-active"  # set of unfinished prompt-URL job ids (one shared pool)
DURATIONS_KEY = "imagine:durations"  # list of recent job durations, for wait estimates
BATCH_SIZES_KEY = "imagine:batch-sizes"  # list: each duration's batch size, same order
CANCEL_KEY = "imagine:cancel:{}"  # job id → set while a running job should stop
EVENTS_CHANNEL = "imagine:events:{}"  # job id → pub/sub channel of its progress
WORKERS_KEY = "imagine:workers:{}"  # worker hostname → heartbeat (JSON), with a TTL
WORKER_BEATS_KEY = "imagine:worker-beats"  # sorted set: worker hostname → heartbeat expiry
WORKER_LOADED_KEY = "imagine:worker-loaded:{}"  # worker hostname → models its child holds
REAPER_LOCK_KEY = "imagine:reaper-lock"  # one reaper at a time, across every worker
TICKET_KEY = "imagine:ticket:{}"  # Celery message (job id) → ids of the jobs drawn under it
FAIR_CLOCK_KEY = "imagine:fair:clock"  # the fair scheduler's virtual time
FAIR_USER_KEY = "imagine:fair:user:{}"  # user key → the fair tag of that user's last job
PREVIEW_KEY = "imagine:preview:{}"  # job id → its latest preview (JPEG bytes), with a TTL

# --- delivery ------------------------------------------------------------------------------
DELIVERED_KEY = "imagine:delivered:{}:{}"  # job id, "kind:step" → set once that step succeeded
DELIVERING_KEY = "imagine:delivering:{}:{}"  # job id, kind → lock while delivering
PROGRESS_PENDING_KEY = "imagine:progress-pending:{}"  # job id → a progress update is queued
DELIVERY_DUE_KEY = "imagine:delivery-due"  # sorted set: job id → when its delivery counts as lost

# --- metrics (hashes of counters) ----------------------------------------------------------
METRICS_JOBS_KEY = "imagine:metrics:jobs"  # "platform|outcome" → count
METRICS_GENERATION_KEY = "imagine:metrics:generation"  # "le=<bound>", "sum", "count"
METRICS_CACHE_KEY = "imagine:metrics:cache"  # "hit" / "miss" → count
METRICS_RETRIES_KEY = "imagine:metrics:delivery_retries"  # "platform|reason" → count
METRICS_WEB_KEY = "imagine:metrics:web"  # "rate_limited" / "placeholder" / ... → count
METRICS_MODEL_LOADS_KEY = "imagine:metrics:model_loads"  # "model|origin|le=<bound>", "…|sum", …
METRICS_MODEL_GENERATION_KEY = "imagine:metrics:model_generation"  # "model|le=<bound>", …
METRICS_QUEUE_WAIT_KEY = "imagine:metrics:queue_wait"  # "le=<bound>", "sum", "count"
METRICS_IMAGES_KEY = "imagine:metrics:images"  # platform → images made
WORKER_GPU_KEY = "imagine:worker-gpu:{}"  # worker hostname → its GPUs' memory and use (JSON)

# --- storage (#17) -----------------------------------------------------------------------------
IMAGE_SERVED_KEY = "imagine:image-served"  # sorted set: image name → day it was last served
GC_LOCK_KEY = "imagine:gc-lock"  # one image garbage collection at a time

# --- governance (#15) -----------------------------------------------------------------------
AUDIT_STREAM_KEY = "imagine:audit"  # Redis Stream of audit entries, capped by length and age
QUOTA_KEY = "imagine:quota:{}:{}"  # UTC day (YYYY-MM-DD), user key → hash: images, gpu_seconds
QUOTA_OVERRIDE_KEY = "imagine:quota-override"  # hash: user key → daily images an admin set
BANNED_KEY = "imagine:banned"  # hash: user key → who banned them and when (JSON)
PAUSED_KEY = "imagine:paused"  # set while an admin paused the queue: who and when (JSON)
BLOCKED_IMAGES_KEY = "imagine:blocked-images"  # sorted set: "job id:index" → when withheld
REPORTED_KEY = "imagine:reported:{}"  # job id → set of user keys who reported it

# --- language (#16) --------------------------------------------------------------------------
TRANSLATION_KEY = "imagine:translation:{}"  # sha256 of model and text → its translation (JSON)
ENHANCEMENT_KEY = "imagine:enhancement:{}"  # sha256 of model, idea and seed → the prompt

# --- web ---------------------------------------------------------------------------------
URL_CACHE_KEY = "imagine:url:{}"  # prompt URL cache key → its entry (JSON)
URL_JOB_KEY = "imagine:url-job:{}"  # job id → its prompt URL's cache key (Delete)
GALLERY_KEY = "imagine:gallery"  # capped list of recent prompt-URL images (JSON)
RATELIMIT_KEY = "imagine:ratelimit:{}"  # client address → token bucket
REGION_LINK_KEY = "imagine:region:{}"  # sha256 of a Vary (Region) link's token → its grant
RECALL_KEY = "imagine:recall:{}"  # recall id → a recalled request (JSON), for Run again

# --- Slack ---------------------------------------------------------------------------------
SLACK_EVENT_KEY = "imagine:slack:event:{}"  # event id → seen (Slack retries events)
SLACK_INTAKE_KEY = "imagine:slack:intake"  # hash: intake id → a prompt acked, not yet queued
SLACK_STATUS_LOCK_KEY = "imagine:slack:status-lock:{}"  # job id → lock on its status message
SLACK_STATUS_FINAL_KEY = "imagine:slack:status-final:{}"  # job id → status shows the result
SLACK_STATUS_THROTTLE_KEY = "imagine:slack:status-throttle:{}"  # job id → progress edit paced
SLACK_PROGRESS_PACE_KEY = "imagine:slack:progress-pace:{}"  # team → progress edit paced
SLACK_PROGRESS_PAUSE_KEY = "imagine:slack:progress-pause:{}"  # team → rate limited, resting
SLACK_USER_KEY = "imagine:slack:user:{}"  # user id → locale and user groups (JSON), cached
SLACK_GROUP_KEY = "imagine:slack:group:{}"  # user-group id → its members' ids (JSON), cached

# --- Discord -------------------------------------------------------------------------------
DISCORD_WAIT_KEY = "imagine:discord:wait:{}"  # rate-limit bucket → wait shared by processes
DISCORD_STATUS_LOCK_KEY = "imagine:discord:status-lock:{}"  # job id → lock on its status message
DISCORD_STATUS_FINAL_KEY = "imagine:discord:status-final:{}"  # job id → result under way: no edits
DISCORD_PREVIEW_SHOWN_KEY = "imagine:discord:preview-shown:{}"  # job id → preview count shown


def generate_queue(model: str) -> str:
    """The Celery queue of a model's jobs: "generate" for the default model."""
    return GENERATE_QUEUE if model == DEFAULT_MODEL else MODEL_QUEUE_PREFIX + model


def queue_model(queue: str) -> str | None:
    """The model whose jobs wait in `queue`; None for a queue that is not a generate queue."""
    if queue == GENERATE_QUEUE:
        return DEFAULT_MODEL
    if queue.startswith(MODEL_QUEUE_PREFIX) and len(queue) > len(MODEL_QUEUE_PREFIX):
        return queue[len(MODEL_QUEUE_PREFIX):]
    return None
