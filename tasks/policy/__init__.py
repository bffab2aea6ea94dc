"""The rules of a shared server: who may use the bot (access, bans), what it may draw (the
prompt blocklist, image safety), how much (daily quotas), whether the queue runs (pause),
and the audit trail that records every decision. `gate.PolicyGate` is what every job passes
on its way into the queue."""
