"""What broke: each fingerprint of failure counted by arm and unit bucket, and tested: pure."""
