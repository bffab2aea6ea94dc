"""bots/discord"""
