"""Prompts that need a download first: an image shared with the prompt, or an image URL.

Slack wants its ack within 3 seconds and a download may take longer, so such a prompt is
*held* before the ack (one HSET: the text, where it came from, the file) and prepared after
it: downloaded, turned into a request by `bots.image_prompts`, queued, then let go. A front
end that dies in between leaves the hold in Redis; every front end picks up holds left for
longer than `STALE_SECONDS` (at start and then every minute), and the job id fixed at hold
time makes picking one up twice queue it once. So once Slack has its ack, the job is not lost.

A shared PNG without prompt text is a recall: its parameters are answered in the thread as
prompt text, with a Run again button that queues them (tasks.core.recalls keeps them).
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
import time

from pydantic import BaseModel, Field
from slack_sdk.errors import SlackApiError, SlackClientError

from bots.errors import PromptError
from bots.followups import FollowUpLimits
from bots.image_prompts import image_prompt
from bots.limits import Limits
from bots.recall import recall_png
from bots.slack import text as say
from bots.slack.client import bot_token, error_code
from bots.slack.files import SharedFile, download
from bots.slack.jobs import Origin, Refusal, SlackJobs
from settings import Settings
from settings.errors import ImagineError
from settings.i18n import _, current_locale, use_locale
from tasks.core.jobs import JOB_ID_BYTES
from tasks.core.queue import Submitted
from tasks.core.recalls import RecallStore
from tasks.core.storage import open_storage
from tasks.names import SLACK_INTAKE_KEY

log = logging.getLogger(__name__)

# Longer than any download and preparation takes (files.py's timeout, image_prompts' own).
STALE_SECONDS = 180.0
SWEEP_SECONDS = 60.0
URL_FIRST = re.compile(r"^\s*<?https?://", re.IGNORECASE)
# KEYS[1]: the holds; ARGV: id, the hold as read, the hold with a new time. Claims a stale
# hold for this process only if nobody changed it since it was read.
_CLAIM = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"""


class Held(BaseModel):
    """A prompt acked but not queued yet: what it said, where from, the file it shared."""

    id: str = Field(default_factory=lambda: secrets.token_hex(8))
    job_id: str = Field(default_factory=lambda: secrets.token_hex(JOB_ID_BYTES))
    user: str
    channel: str
    thread: str = ""
    response_url: str = ""
    team: str = ""
    text: str = ""
    file: SharedFile | None = None
    second: SharedFile | None = None  # a second image: with --cn, the control image
    at: float = Field(default_factory=time.time)
    # The user's language when the prompt was acked: a hold finished later, by the sweeper
    # of another front end, still answers (and queues the job) in it.
    locale: str = Field(default_factory=current_locale)

    @property
    def origin(self) -> Origin:
        return Origin(user=self.user, channel=self.channel, thread=self.thread,
                      response_url=self.response_url, team=self.team)


def needs_download(text: str, file: SharedFile | None) -> bool:
    """A shared file, or a prompt that starts with an image URL (Slack's `<url>` or plain)."""
    return file is not None or bool(URL_FIRST.match(text))


class SlackIntake:
    """Holds, prepares and queues prompts with images; recalls; Run again."""

    def __init__(self, settings: Settings, jobs: SlackJobs, limits: Limits) -> None:
        self.settings = settings
        self.jobs = jobs
        self.limits = limits
        self.redis = jobs.queue.redis
        self.storage = open_storage(settings)
        self.recalls = RecallStore(self.redis, settings.job_ttl)


    # --- before the ack -------------------------------------------------------------------
    def hold(self, origin: Origin, text: str, file: SharedFile | None,
             second: SharedFile | None = None) -> Held | Refusal:
        """Keep the prompt in Redis, so that it outlives this process once Slack is acked."""
        held = Held(user=origin.user, channel=origin.channel, thread=origin.thread,
                    response_url=origin.response_url, team=origin.team, text=text, file=file,
                    second=second)
        try:
            self.redis.hset(SLACK_INTAKE_KEY, held.id, held.model_dump_json())
        except Exception as exc:  # Redis is away: say so while Slack still waits for the ack
            log.exception("holding a Slack prompt failed")
            return Refusal(_("Nothing was queued: the queue is unreachable ({name}); try again "
                             "in a minute.").format(name=type(exc).__name__))
        return held

    # --- after it ---------------------------------------------------------------------------
    def finish(self, held: Held) -> None:
        """Download, prepare and queue a held prompt (or answer a recall), then let it go."""
        with use_locale(held.locale):
            self._finish(held)

    def _finish(self, held: Held) -> None:
        outcome = self._prepare(held)
        try:
            self.redis.hdel(SLACK_INTAKE_KEY, held.id)
        except Exception as exc:  # the sweep finds its job queued and only lets it go then
            log.warning("could not let go of Slack prompt %s: %s", held.id, exc)
        if isinstance(outcome, Refusal):
            self.jobs.tell(held.origin, outcome.text)
        elif outcome is not None:
            self.jobs.show(outcome)

    def _prepare(self, held: Held) -> Submitted | Refusal | None:
        if self.jobs.queue.jobs.find(held.job_id) is not None:
            return None  # queued by an earlier pick-up that died before letting go
        try:
            data = None
            if held.file is not None:
                data = self._download(held.file)
                if not held.text:
                    self._recall(held, data)
                    return None
            more = () if held.second is None else (self._download(held.second),)
            prepared = image_prompt(held.text, self.limits, self.settings, self.storage,
                                    attachment=data, attachments=more)
        except ImagineError as exc:
            return Refusal(say.escape(exc.message))
        except Exception:  # a bug must not leave the hold to be retried forever
            log.exception("preparing a Slack image prompt failed")
            return Refusal(_("That image could not be read; try another one."))
        return self.jobs.accept(prepared.request, held.origin, notes=tuple(prepared.notes),
                                job_id=held.job_id)

    def _download(self, file: SharedFile) -> bytes:
        return download(self._complete(file), bot_token(self.settings),
                        self.settings.max_upload_bytes, self.settings.slack_api_url)

    def _complete(self, file: SharedFile) -> SharedFile:
        """Some events carry only a file's id (`file_access: check_file_info`): files.info."""
        if file.url or not file.id:
            return file
        try:
            return SharedFile.from_event(dict(self.jobs.client.files_info(file=file.id)["file"]))
        except SlackApiError as exc:
            hint = _(" (reinstall the app with the files:read scope)") if error_code(
                exc) == "missing_scope" else ""
            raise PromptError(_("Slack would not describe {file_name} ({exc}){hint}; share it "
                                "again.").format(
                                  file_name=file.name, exc=error_code(exc), hint=hint)) from None
        except (SlackClientError, OSError) as exc:
            raise PromptError(_("Could not reach Slack to read {file_name} ({exc}); share it "
                                "again.").format(file_name=file.name, exc=exc)) from None

    def _recall(self, held: Held, data: bytes) -> None:
        """The parameters of a shared PNG as prompt text, with Run again, in its thread."""
        recalled = recall_png(data, self.limits, FollowUpLimits.from_settings(self.settings))
        recall_id = self.recalls.save(recalled.request)
        text = say.recall_text(held.user, recalled.text, tuple(recalled.notes))
        try:
            self.jobs.client.chat_postMessage(
                channel=held.channel, thread_ts=held.thread or None, text=text,
                blocks=say.run_again_blocks(text, recall_id), unfurl_links=False,
                unfurl_media=False)
        except SlackClientError as exc:
            log.warning("could not post the recall of %s: %s", held.id, exc)

    def run_again(self, recall_id: str, origin: Origin) -> Submitted | Refusal:
        """Run again under a recall: its request queued for the presser, in that thread."""
        request = self.recalls.find(recall_id)
        if request is None:
            return Refusal(_("Those parameters are no longer kept: share the image again."))
        return self.jobs.accept(request, origin)

    # --- holds left by a front end that stopped -------------------------------------------
    def sweep(self) -> int:
        """Finish holds older than STALE_SECONDS; the number picked up."""
        picked = 0
        for key, raw in self.redis.hgetall(SLACK_INTAKE_KEY).items():
            held = Held.model_validate_json(raw)
            if held.at > time.time() - STALE_SECONDS:
                continue
            fresh = held.model_copy(update={"at": time.time()})
            if self.redis.eval(_CLAIM, 1, SLACK_INTAKE_KEY, key, raw,  # type: ignore[arg-type]
                               fresh.model_dump_json()):
                log.warning("finishing Slack prompt %s left by a stopped front end", held.id)
                self.finish(fresh)
                picked += 1
        return picked

    def start_sweeping(self) -> threading.Thread:
        """A daemon thread that sweeps at start and then every SWEEP_SECONDS."""

        def loop() -> None:
            while True:
                try:
                    self.sweep()
                except Exception as exc:  # Redis away: the next sweep tries again
                    log.warning("sweeping held Slack prompts failed: %s", exc)
                time.sleep(SWEEP_SECONDS)

        thread = threading.Thread(target=loop, name="slack-intake-sweep", daemon=True)
        thread.start()
        return thread
