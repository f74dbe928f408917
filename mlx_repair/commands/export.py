"""`mlx-repair export ADAPTER_DIR --format mlx|peft|fused --out DIR`: an adapter that travels."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("adapter_dir", metavar="ADAPTER_DIR", help="a folder written by `mlx-repair train`")
    parser.add_argument(
        "--format",
        choices=("mlx", "peft", "fused"),
        default="peft",
        help="mlx: mlx-lm's adapter; peft: PEFT's adapter (transformers); fused: base + adapter "
        "merged into one model (default: peft)",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="new (or empty) folder to write")
    parser.add_argument(
        "--dequantize", action="store_true", help="fused: write a quantized base's fused weights unquantized"
    )
    parser.add_argument(
        "--base-model",
        metavar="ID",
        help="hub id to name as the base model in PEFT's config and the model card "
        "(default: from the manifest)",
    )


def run(args: argparse.Namespace) -> int:
    from mlx_repair.publish.export import export_adapter

    out = export_adapter(args.adapter_dir, args.format, args.out, args.dequantize, args.base_model)
    print(f"wrote the {args.format} export of {args.adapter_dir} to {out}")
    return 0
