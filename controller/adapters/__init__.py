"""The adapters: one technology each (Kafka, Redis, HTTP, the model, Unleash) behind the ports.

They import the core and the ports, never each other.
"""
