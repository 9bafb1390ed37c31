"""The placement file of `anvil serve --cluster`: validated at start, a bad field named."""

import pytest

from anvil.placement import GroupPlacement, PlacementError, load_placement
from gateway.cli import main


def test_a_yaml_placement_gives_each_listed_base_model_its_own_group(tmp_path):
    path = tmp_path / "placement.yaml"
    path.write_text("default: {samplers: 3}\nbase_models:\n  anvil/tiny-qwen3: {trainers: 2, samplers: 1, shards: 4}\n")
    placement = load_placement(path)
    assert placement.of(placement.group_of("anvil/tiny-qwen3")) == GroupPlacement(trainers=2, samplers=1, shards=4)
    assert placement.group_of("Qwen/Qwen3-8B") is None
    assert placement.of(None) == GroupPlacement(trainers=1, samplers=3)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("zero.json", '{"base_models": {"m": {"trainers": 0}}}', "base_models.m.trainers: Input should be greater than or equal to 1"),
        ("shards.yaml", "default: {shards: 0}\n", "default.shards: Input should be greater than or equal to 1"),
        ("typo.yaml", "default: {sampler: 2}\n", "default.sampler: Extra inputs are not permitted"),
        ("word.yaml", "default: {samplers: many}\n", "default.samplers: Input should be a valid integer"),
        ("list.yaml", "- a\n", "(top level): Input should be a valid dictionary"),
        ("broken.json", "{", "not valid JSON"),
    ],
)
def test_a_bad_placement_is_refused_naming_the_field(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(PlacementError, match="--placement .*" + name) as caught:
        load_placement(path)
    assert message in str(caught.value)


def test_anvil_serve_stops_at_start_on_a_bad_placement(tmp_path, capsys):
    path = tmp_path / "placement.yaml"
    path.write_text("base_models:\n  anvil/tiny-qwen3: {trainers: -1}\n")
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--data-dir", str(tmp_path), "--cluster", "ray", "--placement", str(path)])
    assert exit_.value.code == 2
    assert "base_models.anvil/tiny-qwen3.trainers: Input should be greater than or equal to 1" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--placement", "p.yaml"], "--placement need --cluster"),
        (["--trainer-gpus", "1"], "--trainer-gpus need --cluster"),
        (["--trainer-shards", "2"], "--trainer-shards need --cluster"),
        (["--cluster", "ray", "--trainer-shards", "0"], "--trainer-shards"),
        (["--cluster", "ray", "--trainer-shards", "2", "--placement", "p.yaml"],
         "--trainer-shards: with --placement, give each group's `shards` in the placement file"),
        (["--cluster", "yarn"], "--cluster must be ray, auto or ray://HOST:PORT, got 'yarn'"),
    ],
)
def test_cluster_flags_are_checked_at_start(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit):
        main(["serve", "--data-dir", str(tmp_path), *argv])
    assert message in capsys.readouterr().err


def test_trainer_shards_sets_the_default_groups_shards():
    import argparse

    from gateway.cli import _cluster_settings

    args = argparse.Namespace(cluster="ray", trainer_gpus=1.0, sampler_gpus=0.0, trainer_shards=4, placement=None, samplers=2)
    settings = _cluster_settings(args, argparse.ArgumentParser())
    assert settings.placement.of(None) == GroupPlacement(trainers=1, samplers=2, shards=4)
    assert settings.trainer_gpus == 1.0
