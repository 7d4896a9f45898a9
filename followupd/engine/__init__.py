"""Units of work: scan, plan, send. Each opens its own transactions and never holds one across network I/O."""
