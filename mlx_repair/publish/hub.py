"""Push an exported adapter to the Hugging Face hub.

Everything that can fail without the network fails first: offline mode, a bad repo id,
no token, an adapter that does not export. Then the token is checked against the hub
(`whoami`) before anything is created, so a rejected token or an unreachable hub leaves
no half-made repo behind. Only then is the repo created (if needed) and the export
uploaded (one commit for an adapter; huggingface-hub may split a large fused model).
"""

from __future__ import annotations

import tempfile
from contextlib import contextmanager

from mlx_repair.errors import UserError
from mlx_repair.publish.export import export_adapter

def push_adapter(
    adapter_dir,
    repo_id: str,
    private: bool = False,
    fmt: str = "peft",
    token: str | None = None,
    base_model: str | None = None,
) -> str:
    """Export the adapter in `fmt` and upload it to the model repo `repo_id` (USER/NAME).

    token: by default the standard one (HF_TOKEN, else `hf auth login`'s file).
    Returns the URL of the commit.
    """
    from huggingface_hub import HfApi, constants, get_token

    if constants.is_offline_mode():
        raise UserError(
            "HF_HUB_OFFLINE is set, so nothing can be pushed; unset it, or `mlx-repair export` and copy the folder"
        )
    _check_repo_id(repo_id)
    token = token or get_token()
    if not token:
        raise UserError("no Hugging Face token: run `hf auth login` or set HF_TOKEN (a token with write access)")
    api = HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="mlx-repair-push-") as folder:
        export_adapter(adapter_dir, fmt, folder, base_model=base_model, location=repo_id)
        with _hub_errors(api.endpoint, "checking the token"):
            api.whoami()
        with _hub_errors(api.endpoint, f"creating {repo_id}"):
            api.create_repo(repo_id, private=private, exist_ok=True)
        with _hub_errors(api.endpoint, f"uploading to {repo_id}"):
            commit = api.upload_folder(
                repo_id=repo_id, folder_path=folder, commit_message=f"Upload {fmt} adapter from mlx-repair"
            )
    return commit.commit_url


def _check_repo_id(repo_id: str) -> None:
    """USER/NAME, by huggingface-hub's own rule."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise UserError(f"--repo {repo_id!r}: {str(error).splitlines()[0]}") from None
    if "/" not in repo_id:
        raise UserError(f"--repo {repo_id!r} is not USER/NAME (e.g. alice/qwen-coder-repair-lora)")


@contextmanager
def _hub_errors(endpoint: str, doing: str):
    """Turn the hub's HTTP and connection errors into one line saying what was being done."""
    from huggingface_hub.errors import HfHubHTTPError, HTTPError  # HTTPError: any request that failed

    try:
        yield
    except HfHubHTTPError as error:
        reason = str(error).strip().splitlines()[0][:200]
        raise UserError(f"hub error while {doing} ({reason})") from None
    except HTTPError as error:  # no response at all: connection refused, DNS, timeout
        raise UserError(
            f"cannot reach the hub at {endpoint} while {doing} ({type(error).__name__}); "
            "check the network or HF_ENDPOINT"
        ) from None
