"""bots/slack"""
