"""One module per command: ``run(args, env) -> int``. Shared helpers live in ``common``."""
