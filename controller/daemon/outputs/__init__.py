"""What leaves the daemon, and how it is written: the outbox, rendering, alarms, signed states."""
