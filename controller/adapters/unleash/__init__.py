"""Unleash as a flag platform: the admin API client and how its answers are read."""
