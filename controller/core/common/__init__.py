"""Shared vocabulary of the core.

Errors, timestamps, message field bounds, text, YAML, durations, evidence, histograms,
numerals.
"""
