"""Controller side of joulefarm: device registry, scheduling, storage and the CLI."""
