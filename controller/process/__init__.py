"""What a running process needs: log configuration, retrying with log lines, stopping on signals."""
