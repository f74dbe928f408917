"""`mlx-repair push ADAPTER_DIR --repo USER/NAME`: export and upload to the Hugging Face hub."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("adapter_dir", metavar="ADAPTER_DIR", help="a folder written by `mlx-repair train`")
    parser.add_argument("--repo", required=True, metavar="USER/NAME", help="the hub model repo to push to")
    parser.add_argument("--private", action="store_true", help="create the repo private (if it does not exist)")
    parser.add_argument(
        "--format", choices=("mlx", "peft", "fused"), default="peft", help="what to upload (default: peft)"
    )
    parser.add_argument(
        "--base-model", metavar="ID", help="hub id to name as the base model (default: from the manifest)"
    )


def run(args: argparse.Namespace) -> int:
    from mlx_repair.publish.hub import push_adapter

    url = push_adapter(args.adapter_dir, args.repo, args.private, args.format, base_model=args.base_model)
    print(f"pushed the {args.format} export of {args.adapter_dir}: {url}")
    return 0
