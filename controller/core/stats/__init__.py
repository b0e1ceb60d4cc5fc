"""The statistics.

Aggregates and their folding, sequential tests, sample-ratio mismatch, latency,
guardrails, limits and rates.
"""
