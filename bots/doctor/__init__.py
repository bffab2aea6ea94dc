"""`imagine doctor`: checks of a deployment, each with a status and a fix a person can act on.

One module per group of checks (system, services, chat, web); `runner` runs them all and
`report` prints them. Every check catches its own failures: one broken part never hides
the others' answers.
"""
