"""The front ends (Slack, Discord, web) and what they share: the prompt grammar and its limits,
the follow-up actions, presentation helpers and the `imagine` command line (the composition
root that wires platform adapters into the queue)."""
