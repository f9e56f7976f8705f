"""State: the format and codec, per-value encryption, the local and remote stores."""
