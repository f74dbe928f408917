"""`mlx-repair push` against a local HTTP server standing in for the Hugging Face hub.

The fake hub answers the five requests huggingface-hub 2.4.0 makes for whoami,
create_repo and upload_folder: GET /api/whoami-v2, POST /api/repos/create, POST
/api/validate-yaml (the README's metadata), POST /api/models/{repo}/preupload/{rev}
(it answers "regular" for every file, so the bytes
travel base64 inside the commit and no LFS or xet storage is involved) and POST
/api/models/{repo}/commit/{rev} (NDJSON: a header line, then one line per file). Any
other request gets a 404 and is recorded, so the tests see everything that was asked.
huggingface-hub also fetches a registry of AI agent harnesses once a day
(/api/agent-harnesses, best-effort, for its user agent); the tests see it but leave it
out of the push's own requests.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mlx_repair.cli import main
from mlx_repair.errors import UserError
from mlx_repair.publish.export import export_adapter
from mlx_repair.publish.hub import push_adapter
from test_export import make_adapter

TOKEN = "hf_fake_token_for_tests"
REPO = "alice/tiny-repair"
HOUSEKEEPING = ("/api/agent-harnesses",)


class FakeHub:
    """A threaded HTTP server with the hub's repo-creation and upload endpoints."""

    def __init__(self):
        self.requests: list[tuple[str, str]] = []  # (method, path)
        self.created: list[dict] = []
        self.validated: list[str] = []  # README.md texts
        self.commits: list[dict] = []  # {"header": ..., "files": {path: bytes}}
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def push_requests(self) -> list[tuple[str, str]]:
        return [(method, path) for method, path in self.requests if path not in HOUSEKEEPING]

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest's output clean
                pass

            def do_GET(self):
                self._route("GET")

            def do_POST(self):
                self._route("POST")

            def _route(self, method):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path = self.path.split("?")[0]
                hub.requests.append((method, path))
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self._reply(401, {"error": "Invalid credentials in Authorization header"})
                parts = path.strip("/").split("/")
                if (method, path) == ("GET", "/api/whoami-v2"):
                    return self._reply(200, {"type": "user", "name": "alice"})
                if (method, path) == ("POST", "/api/repos/create"):
                    payload = json.loads(body)
                    hub.created.append(payload)
                    return self._reply(200, {"url": f"{hub.url}/{payload['organization']}/{payload['name']}"})
                if (method, path) == ("POST", "/api/validate-yaml"):
                    hub.validated.append(json.loads(body)["content"])
                    return self._reply(200, {"errors": [], "warnings": []})
                if method == "POST" and parts[:2] == ["api", "models"] and parts[4:5] == ["preupload"]:
                    files = json.loads(body)["files"]
                    modes = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]
                    return self._reply(200, {"files": modes})
                if method == "POST" and parts[:2] == ["api", "models"] and parts[4:5] == ["commit"]:
                    hub.commits.append(_parse_commit(body))
                    repo = "/".join(parts[2:4])
                    return self._reply(200, {"commitUrl": f"{hub.url}/{repo}/commit/{'a' * 40}", "commitOid": "a" * 40})
                return self._reply(404, {"error": f"fake hub: no route for {method} {path}"})

            def _reply(self, status, payload):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


def _parse_commit(body: bytes) -> dict:
    lines = [json.loads(line) for line in body.splitlines() if line.strip()]
    header = next(line["value"] for line in lines if line["key"] == "header")
    files = {}
    for line in lines:
        if line["key"] == "file":
            assert line["value"]["encoding"] == "base64"
            files[line["value"]["path"]] = base64.b64decode(line["value"]["content"])
        else:
            assert line["key"] == "header", f"unexpected commit operation {line['key']}"
    return {"header": header, "files": files}


@pytest.fixture
def hub():
    server = FakeHub()
    yield server
    server.close()


@pytest.fixture(scope="module")
def adapter_dir(tiny_model_dir, tmp_path_factory):
    return make_adapter(tiny_model_dir, tmp_path_factory.mktemp("push") / "adapter")


@pytest.fixture
def hub_env(hub, tmp_path, monkeypatch):
    """This process pointed at the fake hub, with no stored token and offline mode off
    (huggingface-hub reads HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE once, at import)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLX_REPAIR_CACHE", str(tmp_path / "cache"))
    return monkeypatch


def test_push_creates_the_repo_and_uploads_exactly_the_export(hub, adapter_dir, tmp_path):
    """End to end through the `mlx-repair push` command in a fresh process, which finds the
    fake hub through HF_ENDPOINT and the token through HF_TOKEN."""
    env = {
        **os.environ,
        "HF_ENDPOINT": hub.url,
        "HF_TOKEN": TOKEN,
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "MLX_REPAIR_CACHE": str(tmp_path / "cache"),
    }
    env.pop("HF_HUB_OFFLINE", None)
    command = [sys.executable, "-m", "mlx_repair.cli", "push", str(adapter_dir), "--repo", REPO, "--private"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"{hub.url}/{REPO}/commit/" in done.stdout

    assert hub.push_requests() == [
        ("GET", "/api/whoami-v2"),
        ("POST", "/api/repos/create"),
        ("POST", "/api/validate-yaml"),
        ("POST", f"/api/models/{REPO}/preupload/main"),
        ("POST", f"/api/models/{REPO}/commit/main"),
    ]
    assert hub.created == [{"name": "tiny-repair", "organization": "alice", "visibility": "private"}]
    expected = export_adapter(adapter_dir, "peft", tmp_path / "expected", location=REPO)
    (commit,) = hub.commits
    assert commit["header"]["summary"] == "Upload peft adapter from mlx-repair"
    assert sorted(commit["files"]) == [
        "README.md", "adapter_config.json", "adapter_model.safetensors", "manifest.json", "report.json"]
    for name, data in commit["files"].items():
        assert data == (expected / name).read_bytes(), name
    assert hub.validated == [(expected / "README.md").read_text()]


def test_push_of_the_mlx_format_to_a_public_repo(hub, hub_env, adapter_dir, tmp_path):
    hub_env.setenv("HF_TOKEN", TOKEN)
    url = push_adapter(adapter_dir, REPO, fmt="mlx")
    assert url.startswith(f"{hub.url}/{REPO}/commit/")
    assert hub.created == [{"name": "tiny-repair", "organization": "alice", "visibility": "public"}]
    assert sorted(hub.commits[0]["files"]) == [
        "README.md", "adapter_config.json", "adapters.safetensors", "manifest.json", "report.json"]
    assert hub.commits[0]["files"]["adapters.safetensors"] == (adapter_dir / "adapters.safetensors").read_bytes()


def test_without_a_token_one_line_and_no_request(hub, hub_env, adapter_dir, capsys):
    assert main(["push", str(adapter_dir), "--repo", REPO]) == 2
    error = capsys.readouterr().err
    assert error == "mlx-repair push: error: no Hugging Face token: run `hf auth login` or set HF_TOKEN " \
        "(a token with write access)\n"
    assert hub.requests == []


def test_offline_one_line_and_no_request(hub, hub_env, adapter_dir, capsys):
    from huggingface_hub import constants

    hub_env.setenv("HF_TOKEN", TOKEN)
    hub_env.setattr(constants, "HF_HUB_OFFLINE", True)
    assert main(["push", str(adapter_dir), "--repo", REPO]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "HF_HUB_OFFLINE is set, so nothing can be pushed" in error
    assert hub.requests == []


def test_a_rejected_token_creates_nothing(hub, hub_env, adapter_dir):
    hub_env.setenv("HF_TOKEN", "hf_wrong")
    with pytest.raises(UserError, match="hub error while checking the token") as error:
        push_adapter(adapter_dir, REPO)
    assert "\n" not in str(error.value)
    assert hub.push_requests() == [("GET", "/api/whoami-v2")] and hub.created == [] and hub.commits == []


def test_an_unreachable_hub_is_one_line(hub, hub_env, adapter_dir):
    from huggingface_hub import constants

    hub_env.setenv("HF_TOKEN", TOKEN)
    hub.close()
    hub_env.setattr(constants, "ENDPOINT", hub.url)  # nothing listens there any more
    with pytest.raises(UserError, match=r"cannot reach the hub at http://127\.0\.0\.1:\d+ while checking the token"):
        push_adapter(adapter_dir, REPO)


def test_a_bad_repo_id_is_refused_before_any_request(hub, hub_env, adapter_dir):
    hub_env.setenv("HF_TOKEN", TOKEN)
    with pytest.raises(UserError, match="is not USER/NAME"):
        push_adapter(adapter_dir, "just-a-name")
    assert hub.requests == []
