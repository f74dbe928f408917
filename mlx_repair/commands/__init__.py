"""One module per `mlx-repair` subcommand: HELP, add_arguments(parser), run(args) -> int."""

from mlx_repair.config import QUANTIZE_BITS, QUANTIZE_GROUP_SIZE


def add_model_arguments(parser) -> None:
    """--model and --quantize, for the commands that load a model to generate or train."""
    parser.add_argument("--model", dest="run.model", metavar="MODEL", help="packaged name, .gguf file, model folder or hub id")
    parser.add_argument(
        "--quantize", dest="run.quantize", type=int, choices=QUANTIZE_BITS,
        help=f"quantize the weights to this many bits after loading (group size {QUANTIZE_GROUP_SIZE}, "
        "as mlx-lm): less memory and faster on Metal; on the CPU, where weights stay float32, MLX's "
        "quantized matmuls are 3-10x slower, so use it there only when memory is short",
    )
