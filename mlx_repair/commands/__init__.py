"""One module per `mlx-repair` subcommand: HELP, add_arguments(parser), run(args) -> int."""
