"""tasks/worker"""
