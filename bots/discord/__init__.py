"""Discord front end: the discord.py bot (/imagine, mentions, buttons), message formatting,
the REST client and the delivery adapter the deliver worker uses."""
