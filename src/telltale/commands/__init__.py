"""CLI command groups, one module per topic; each exposes `register(main)`. The CLI is thin:
parse options, call a library function, render its result."""
