"""Running the daemon: wiring the services, connecting, supervising their tasks, closing, topics."""
