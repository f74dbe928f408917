import pytest

from mlx_repair.config import Config, apply_overrides, load_config
from mlx_repair.errors import UserError


def write(tmp_path, text):
    path = tmp_path / "mlx-repair.toml"
    path.write_text(text)
    return path


def test_defaults_without_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_config() == Config()


def test_file_values_are_read_and_ints_widen_to_floats(tmp_path):
    config = load_config(write(tmp_path, '[run]\nmodel = "m"\nlimit = 5\n[sampling]\ntemperature = 1\n'))
    assert config.run.model == "m" and config.run.limit == 5
    assert config.sampling.temperature == 1.0 and isinstance(config.sampling.temperature, float)
    assert config.sampling.max_tokens == Config().sampling.max_tokens


def test_file_in_working_directory_is_found(tmp_path, monkeypatch):
    write(tmp_path, "[repair]\nrounds = 3\n")
    monkeypatch.chdir(tmp_path)
    assert load_config().repair.rounds == 3


def test_flags_override_file_values_only_when_given(tmp_path):
    config = load_config(write(tmp_path, "[sampling]\ntemperature = 0.8\nseed = 7\n"))
    apply_overrides(config, {"sampling.temperature": 0.2, "sampling.seed": None, "command": "eval"})
    assert (config.sampling.temperature, config.sampling.seed) == (0.2, 7)


@pytest.mark.parametrize(
    "text, message",
    [
        ("[sampling]\ntemprature = 1.0\n", "unknown key 'sampling.temprature'"),
        ("[nonsense]\nx = 1\n", "unknown key 'nonsense'"),
        ("[sampling]\nsamples = 'four'\n", "'sampling.samples' must be int, got 'four'"),
        ("[sampling]\nsamples = true\n", "'sampling.samples' must be int, got True"),
        ("[sampling]\ntemperature = 'hot'\n", "'sampling.temperature' must be float"),
        ("run = 3\n", "'run' must be a table"),
        ("[train]\ncontrol = 'noise'\n", "'train.control' must be unset or one of garbage, got 'noise'"),
        ("[train]\nweights = 'first'\n", "'train.weights' must be best or last, got 'first'"),
        ("[run\n", "not valid TOML"),
    ],
)
def test_bad_files_are_one_line_errors_naming_key_and_file(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(UserError) as error:
        load_config(path)
    assert str(error.value).startswith(f"{path}: ")
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_missing_explicit_file(tmp_path):
    with pytest.raises(UserError, match="config file not found"):
        load_config(tmp_path / "absent.toml")


def test_quantize_and_the_prompts_wording_change_the_run_directory(monkeypatch):
    """A resumed run must be the same experiment: other bits or other prompts start anew."""
    from mlx_repair.generation import prompts
    from mlx_repair.pipeline.stages import run_dir, settings_of

    plain, quantized = Config(), Config()
    quantized.run.quantize = 4
    assert settings_of(quantized)["run"]["quantize"] == 4
    before = run_dir(plain, "eval", settings_of(plain, side="eval"))
    assert run_dir(quantized, "eval", settings_of(quantized, side="eval")) != before
    assert run_dir(plain, "eval", settings_of(plain, side="eval")) == before  # stable
    monkeypatch.setattr(prompts, "ANSWER_FORMAT", prompts.ANSWER_FORMAT + " Be brief.")
    assert run_dir(plain, "eval", settings_of(plain, side="eval")) != before


def test_quantize_from_a_file_must_be_offered_bits(tmp_path):
    assert load_config(write(tmp_path, "[run]\nquantize = 8\n")).run.quantize == 8
    with pytest.raises(UserError, match="'run.quantize' must be 4 or 8 \\(bits\\), got 3"):
        load_config(write(tmp_path, "[run]\nquantize = 3\n"))


@pytest.mark.parametrize("command", ["eval", "mine", "train"])
def test_quantize_flag_is_explained_and_checked_by_argparse(command, capsys):
    from mlx_repair.cli import main

    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert "--quantize {4,8}" in " ".join(capsys.readouterr().out.split())
    with pytest.raises(SystemExit) as error:
        main([command, "--quantize", "3"])
    assert error.value.code == 2 and "invalid choice: 3" in capsys.readouterr().err


def test_the_readme_config_example_is_valid_and_train_settings_reach_training(tmp_path):
    from pathlib import Path

    from mlx_repair.cli import build_parser
    from mlx_repair.config import config_from_args
    from mlx_repair.pipeline.train import mix_of, train_config_of

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    example = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    path = write(tmp_path, example.replace("iters = 60", "iters = 7"))
    config = config_from_args(build_parser().parse_args(["train", "--config", str(path)]))
    assert (train_config_of(config).iters, train_config_of(config).rank, mix_of(config).min_pairs) == (7, 8, 10)
    flagged = config_from_args(build_parser().parse_args(["train", "--config", str(path), "--iters", "9", "--dora"]))
    assert train_config_of(flagged).iters == 9 and train_config_of(flagged).fine_tune_type == "dora"
    assert config.sandbox.cpu_s == 10.0


def test_training_settings_do_not_move_the_eval_and_mine_runs():
    """Changing --iters retrains; it must not re-evaluate the base or mine again."""
    from mlx_repair.pipeline.stages import run_dir, settings_of

    plain, retrained = Config(), Config()
    retrained.train.iters = 30
    for stage, side in (("eval", "eval"), ("mine", "train")):
        assert run_dir(plain, stage, settings_of(plain, side=side)) == run_dir(retrained, stage, settings_of(retrained, side=side))


def test_selection_strategies_are_checked_and_do_not_move_the_eval_run(tmp_path):
    from mlx_repair.config import SELECT_STRATEGIES, selected_strategies
    from mlx_repair.pipeline.stages import run_dir, settings_of

    assert selected_strategies("") == ()
    assert selected_strategies("all") == ("first", "visible", "agreement")  # the critic only when there is one
    assert selected_strategies("all", critic=True) == SELECT_STRATEGIES
    assert selected_strategies("critic") == ("first", "critic")
    assert selected_strategies("agreement, visible") == ("first", "visible", "agreement")  # the baseline always
    assert selected_strategies("visible,critics") is None
    with pytest.raises(UserError, match="'select.strategies' must be \"all\" or some of first, visible, agreement, critic, got 'best'"):
        load_config(write(tmp_path, '[select]\nstrategies = "best"\n'))
    plain, selecting = Config(), Config()
    selecting.select.strategies = "all"
    assert run_dir(plain, "eval", settings_of(plain, side="eval")) == run_dir(selecting, "eval", settings_of(selecting, side="eval"))


def test_mining_takes_its_own_sampling_and_ignores_an_unused_repair_prompt():
    from mlx_repair.pipeline.mine import mining_config
    from mlx_repair.pipeline.stages import run_dir, settings_of

    config = Config()
    config.mine.samples, config.mine.temperature = 6, 0.7
    mined = mining_config(config)
    assert (mined.sampling.samples, mined.sampling.temperature) == (6, 0.7)
    assert (config.sampling.samples, config.sampling.temperature) == (1, 0.0)  # evaluation stays greedy

    def directory(prompt, rounds):
        config.repair.prompt, config.repair.rounds = prompt, rounds
        mined = mining_config(config)
        return run_dir(mined, "mine", settings_of(mined, side="train"))

    assert directory("facts", 0) == directory("code", 0)  # no repair turn: the same drafts
    assert directory("facts", 1) != directory("code", 1)


def test_only_more_repair_rounds_continue_a_run():
    from mlx_repair.generation.prompts import fingerprint
    from mlx_repair.pipeline.stages import adds_repair_rounds

    def settings(prompt="code", rounds=0, samples=4, prompts=None):
        return {"repair": {"prompt": prompt, "rounds": rounds}, "sampling": {"samples": samples},
                "prompts": prompts or fingerprint(prompt)}

    unrepaired = settings()
    assert adds_repair_rounds(unrepaired, settings("facts", 1))  # no repair prompt was shown yet
    assert not adds_repair_rounds(settings(prompts="older wording"), settings("facts", 1))  # stale drafts
    assert adds_repair_rounds(settings("facts", 1), settings("facts", 2))
    assert not adds_repair_rounds(settings("facts", 1), settings("code", 2))
    assert not adds_repair_rounds(settings("facts", 1), settings("facts", 1))
    assert not adds_repair_rounds(settings("facts", 2), settings("facts", 1))
    assert not adds_repair_rounds(unrepaired, settings("facts", 1, samples=8))  # other drafts
    evaluated = {"repair": True, "prompts": fingerprint("facts")}
    assert not adds_repair_rounds({**evaluated, "repair": False}, evaluated)  # eval's own flag


def test_only_settings_that_shape_a_stage_move_its_run_directory():
    """Sections read by other jobs (invent, select, mine through mining_config, train) and
    the isolation level leave the eval directory where it was."""
    from mlx_repair.pipeline.stages import run_dir, settings_of

    plain, other = Config(), Config()
    other.invent.count, other.select.strategies = 5, "visible"
    other.sandbox.isolation, other.mine.samples = "bwrap", 8
    assert run_dir(plain, "eval", settings_of(plain, side="eval")) == run_dir(other, "eval", settings_of(other, side="eval"))
    other.repair.prompt = "code"
    assert run_dir(plain, "eval", settings_of(plain, side="eval")) != run_dir(other, "eval", settings_of(other, side="eval"))
