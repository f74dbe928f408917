"""The Textual app (installed as mlx_repair.tui); it only consumes the core's events and store."""
