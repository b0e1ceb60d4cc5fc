"""Development tooling: an embedded broker, Redis and model server as child processes."""
