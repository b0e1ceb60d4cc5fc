"""rolloutctl: the operator's command line, its views and the alert forwarder."""
