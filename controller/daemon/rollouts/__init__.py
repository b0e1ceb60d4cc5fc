"""The one writer of rollouts and its loops: engine, commands, gates, consulting, containment."""
