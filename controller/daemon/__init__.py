"""The daemon's services: ingest, the rollout engine, monitor intake, wiring, metrics."""
