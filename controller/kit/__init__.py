"""What every client shares: Kafka error translation and client lifecycle, back-off, deadlines.

Shipped in the SDK wheel: nothing here imports the daemon, structlog or Redis.
"""
