"""What signed commands keep besides rollouts: the keyring, app keys and segments."""
