"""Machinery shared by the ISVapp, Atlassian Marketplace and Heroku vendor taps."""
