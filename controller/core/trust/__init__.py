"""What is signed and who may send: Ed25519 signatures on commands and flag states, and app keys."""
