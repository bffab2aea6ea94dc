"""`/imagine admin <command>` on Slack: the admin commands of bots.admin for workspace admins
and owners and the users in IMAGINE_SLACK_ADMINS.

The listener acks at once (a users.info call may be needed, and a reveal uploads a file);
this answers after the ack through the command's response_url, for the admin's eyes only.
A revealed image goes into the admin's direct messages with the app, never into the channel.
Whether a user is an admin is asked of users.info on first use and remembered for a few
minutes, so a burst of commands costs one call.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref

from slack_sdk.errors import SlackClientError

from bots.admin import COMMANDS, Admin, AdminCommand, AdminUsage, admin_refusal, parse_text
from bots.admin_view import AdminAnswer, View
from bots.permissions import Role
from bots.slack import text as say
from bots.slack.jobs import Origin, SlackJobs
from settings.i18n import _
from tasks.core.storage import ImageStore, open_storage

log = logging.getLogger(__name__)

ROLE_SECONDS = 300.0  # how long a users.info answer about a user's role is trusted
VIEW = View(platform="slack", escape=say.escape, limit=39_000)
_made: weakref.WeakKeyDictionary[SlackJobs, SlackAdmin] = weakref.WeakKeyDictionary()
_made_lock = threading.Lock()


class SlackAdmin:
    @classmethod
    def of(cls, jobs: SlackJobs) -> SlackAdmin:
        """The one SlackAdmin of `jobs` (its role cache and storage client live on)."""
        with _made_lock:
            made = _made.get(jobs)
            if made is None:
                made = _made[jobs] = cls(jobs)
            return made

    def __init__(self, jobs: SlackJobs, storage: ImageStore | None = None) -> None:
        self.jobs = jobs
        self.admin = Admin(jobs.settings, jobs.queue, storage or open_storage(jobs.settings))
        self._roles: dict[str, tuple[Role, float]] = {}
        self._lock = threading.Lock()

    def role(self, user: str) -> Role:
        """The user's role, from a users.info answer of the last ROLE_SECONDS."""
        now = time.monotonic()
        with self._lock:
            known = self._roles.get(user)
        if known is not None and known[1] > now:
            return known[0]
        role = self.jobs.role(user)
        with self._lock:
            self._roles[user] = (role, now + ROLE_SECONDS)
        return role

    def handle(self, origin: Origin, text: str) -> None:
        """Run the command in `text` ("admin …", Slack's markup intact) for `origin.user`."""
        actor = f"slack:{origin.user}"
        if self.role(origin.user) < Role.admin:
            words = text.lower().split()
            name = words[1] if len(words) > 1 and words[1] in COMMANDS else "unknown"
            self.admin.record(AdminCommand(name), actor, "refused", "not an admin")
            self.jobs.tell(origin, admin_refusal())
            return
        try:
            command = parse_text(text)
        except AdminUsage as exc:
            self.jobs.tell(origin, exc.message)
            return
        answer = self.admin.run(command, actor, VIEW)
        self.jobs.tell(origin, self._send_files(answer, origin.user))

    def _send_files(self, answer: AdminAnswer, user: str) -> str:
        """Upload the answer's images into the admin's DM; the text to show in the channel."""
        if not answer.files:
            return answer.text
        client = self.jobs.client
        try:
            channel = client.conversations_open(users=user)["channel"]["id"]
            client.files_upload_v2(
                channel=channel, initial_comment=answer.text,
                file_uploads=[{"file": f.data, "filename": f.filename, "title": f.filename}
                              for f in answer.files])
        except (SlackClientError, OSError) as exc:
            log.warning("could not send a revealed image to %s: %s", user, exc)
            return _("⚠️ The image could not be sent to your direct messages right now; try "
                     "again in a minute.")
        return _("{text}\nThe image is in your direct messages with me.").format(
            text=answer.text)
