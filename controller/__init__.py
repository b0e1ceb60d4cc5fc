"""rollout-controller: progressive delivery for feature flags, driven by Kafka events."""

__version__ = "0.1.0"
