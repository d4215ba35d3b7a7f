"""One module per data source, each with an idempotent ``prepare_*`` (completion marker)."""
