"""Flag platforms a rollout is served by: sync, writes, their alerts, and the write slots."""
