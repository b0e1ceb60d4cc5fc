"""Adapters: the thin edges towards Kafka and Redis. They import the core, never each other."""
