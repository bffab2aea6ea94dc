"""bots/web"""
