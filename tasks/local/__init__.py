"""tasks/local"""
