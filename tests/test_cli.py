"""The dispatcher and the settings that reach the core, as a user's command line gives them."""

import subprocess
import sys

import pytest

from mlx_repair.cli import build_parser, main
from mlx_repair.config import Config


def test_a_command_may_have_a_run_flag_beside_the_dispatcher():
    args = build_parser().parse_args(["tui", "runs/x", "--run", "eval"])
    assert args.run == "eval" and callable(args.handler)
    assert build_parser().parse_args(["tui", "runs/x"]).run is None


def test_the_default_adapter_folder_is_the_same_in_two_processes(tmp_path):
    code = (
        "from mlx_repair.cli import build_parser\n"
        "from mlx_repair.config import config_from_args\n"
        "from mlx_repair.pipeline.train import default_out, train_config_of\n"
        "args = build_parser().parse_args(['train', '--preset', 'cpu', '--iters', '7'])\n"
        "config = config_from_args(args)\n"
        "print(default_out(config, train_config_of(config)))\n"
    )
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True) for _ in range(2)]
    first, second = (r.stdout.strip() for r in runs)
    assert first == second and first.startswith("adapters/")
    other = subprocess.run([sys.executable, "-c", code.replace("'7'", "'8'")], capture_output=True, text=True, cwd=tmp_path, check=True)
    assert other.stdout.strip() != first  # a setting that changes the adapter changes the folder


def test_every_sandbox_setting_reaches_the_pool():
    from mlx_repair.pipeline.stages import sandbox_pool

    config = Config()
    config.sandbox.timeout_s, config.sandbox.memory_mb, config.sandbox.workers = 30.0, 512, 1
    with sandbox_pool(config) as pool:
        assert (pool.limits.timeout_s, pool.limits.cpu_s, pool.limits.memory_mb, pool.workers) == (30.0, 30.0, 512, 1)
    config.sandbox.cpu_s = 5.0
    with sandbox_pool(config) as pool:
        assert pool.limits.cpu_s == 5.0
    config.sandbox.isolation = "rlimits-only"
    with sandbox_pool(config) as pool:
        assert pool.isolation == "rlimits-only"


@pytest.mark.parametrize("command", ["doctor", "models"])
def test_commands_without_settings_take_no_config_flag(command, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--config", "x.toml"])
    assert "unrecognized arguments: --config" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["eval", "--samples", "0"], "'sampling.samples' must be at least 1, got 0"),
        (["mine", "--rounds", "9"], "'repair.rounds' must be 0 to 3, got 9"),
        (["train", "--learning-rate", "0"], "'train.learning_rate' must be more than 0, got 0.0"),
        (["eval", "--limit", "0"], "'run.limit' must be at least 1, got 0"),
    ],
)
def test_bad_settings_stop_before_any_work(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main([*argv, "--model", "no-such-model"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()  # no run directory left behind


@pytest.mark.parametrize("fraction", [5.0, 0.0, 1.0])
def test_eval_fraction_out_of_range_in_the_file_is_one_line(fraction, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mlx-repair.toml").write_text(f"[run]\neval_fraction = {fraction}\n")
    assert main(["eval", "--model", "no-such-model"]) == 2
    assert f"mlx-repair.toml: 'run.eval_fraction' must be between 0 and 1 (exclusive), got {fraction}" in capsys.readouterr().err
