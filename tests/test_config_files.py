"""Configs by name, and configs that build on a base (``config:`` key), through the real parser."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ldifs_lightning.cli import build_cli, main
from ldifs_lightning.config_files import (
    config_base,
    resolve_config,
    shipped_config,
    shipped_config_names,
    shipped_configs_dir,
)

REPO = Path(__file__).resolve().parents[1]


def printed_config(capsys, *configs: str, extra: tuple[str, ...] = ()) -> dict:
    args = ["fit"]
    for config in configs:
        args += ["--config", config]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, *extra, "--print_config"])
    assert exit_info.value.code == 0
    return yaml.safe_load(capsys.readouterr().out)


def test_the_checkout_ships_its_configs_folder():
    # An editable install or a checkout reads the repository's configs/ (a wheel its own copy).
    assert shipped_configs_dir() == REPO / "configs"
    names = shipped_config_names()
    assert {"demo/ldifs", "demo/ft", "methods/ldifs", "data/eurosat", "base/vit_b32"} <= set(names)
    assert len(names) == len(list((REPO / "configs").rglob("*.yaml")))


@pytest.mark.parametrize(
    "name", ["demo/ldifs", "demo/ldifs.yaml", "configs/demo/ldifs.yaml", "./configs/demo/ldifs"]
)
def test_a_shipped_config_resolves_by_name(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no such file here: the shipped one is meant
    assert resolve_config(name) == str(REPO / "configs/demo/ldifs.yaml")


@pytest.mark.parametrize("name", ["demo/nope", "../configs/demo/ldifs", "/demo/ldifs", "demo"])
def test_what_is_not_a_shipped_config(name):
    assert shipped_config(name) is None


def test_a_file_in_the_working_directory_wins_over_a_shipped_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "ldifs").write_text("seed_everything: 3\n")
    assert resolve_config("demo/ldifs") == "demo/ldifs"
    assert resolve_config('{"seed_everything": 4}') == '{"seed_everything": 4}'  # inline


def test_an_unknown_name_lists_what_exists(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"nor a shipped config; the \d+ shipped configs"):
        resolve_config("no/such")
    with pytest.raises(FileNotFoundError, match=r"did you mean methods/ldifs\b"):
        resolve_config("methods/ldfis")
    with pytest.raises(FileNotFoundError, match=r"did you mean .*\bmethods/ldifs\b"):
        resolve_config("ldifs")  # the file name alone
    with pytest.raises(FileNotFoundError, match=r"did you mean compare/lpft, methods/lpft\?"):
        resolve_config("lp-ft")


def test_by_name_and_by_path_give_the_same_run(capsys, tmp_path, monkeypatch):
    by_path = printed_config(capsys, str(REPO / "configs/demo/ldifs.yaml"))
    monkeypatch.chdir(tmp_path)
    assert printed_config(capsys, "demo/ldifs") == by_path


def test_every_method_config_builds_on_the_reference_base():
    base = shipped_config("base/vit_b32")
    methods = sorted((shipped_configs_dir() / "methods").glob("*.yaml"))
    assert len(methods) == 14
    for method in methods:
        assert config_base(method) == base, method.name
        loaded = yaml.safe_load(method.read_text())
        assert "trainer" not in loaded or set(loaded["trainer"]) == {"callbacks+"}
        shared = {"model_name", "pretrained", "weight_decay", "warmup_steps"}
        assert not shared & set(loaded["model"]["init_args"]), method.name  # said once, in base


def test_a_base_is_merged_key_by_key(capsys, tmp_path):
    """The outer file's sections add to the base's (jsonargparse alone would replace them)."""
    (tmp_path / "base.yaml").write_text(
        "seed_everything: 7\ntrainer:\n  precision: bf16-mixed\n  gradient_clip_val: 0.5\n"
        "model:\n  class_path: ldifs_lightning.LDIFSModule\n  init_args:\n"
        "    model_name: ldifs-tiny-rn\n    lr: 0.5\n"
    )
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "method.yaml").write_text(
        "config: ../base.yaml\ntrainer:\n  max_epochs: 3\n"
        "model:\n  class_path: ldifs_lightning.LDIFSModule\n  init_args:\n    lr: 0.25\n"
    )
    printed = printed_config(capsys, str(tmp_path / "sub" / "method.yaml"))
    assert printed["seed_everything"] == 7
    assert printed["trainer"]["precision"] == "bf16-mixed"
    assert printed["trainer"]["gradient_clip_val"] == 0.5
    assert printed["trainer"]["max_epochs"] == 3
    assert printed["model"]["init_args"]["model_name"] == "ldifs-tiny-rn"
    assert printed["model"]["init_args"]["lr"] == 0.25  # the outer file wins
    # A later --config and the command line still win over both.
    later = printed_config(
        capsys,
        str(tmp_path / "sub" / "method.yaml"),
        extra=("--model.init_args.lr", "0.125", "--trainer.precision", "32-true"),
    )
    assert (later["model"]["init_args"]["lr"], later["trainer"]["precision"]) == (0.125, "32-true")


def test_the_readme_pair_resolves_as_data_then_base_then_method(capsys):
    printed = printed_config(
        capsys, str(REPO / "configs/data/eurosat.yaml"), str(REPO / "configs/methods/lp.yaml")
    )
    init_args = printed["model"]["init_args"]
    assert (init_args["model_name"], init_args["pretrained"]) == ("ViT-B-32", "openai")
    # base's lr, lp.yaml's own keys
    assert (init_args["lr"], init_args["freeze_encoder"], init_args["head_init"]) == (
        1e-5,
        True,
        "linear_probe",
    )
    assert (printed["trainer"]["precision"], printed["trainer"]["gradient_clip_val"]) == (
        "32-true",
        1.0,
    )
    assert printed["trainer"]["max_epochs"] == 12  # from the data config


def test_a_missing_or_cyclic_base_is_one_error(tmp_path):
    (tmp_path / "a.yaml").write_text("config: b.yaml\n")
    (tmp_path / "b.yaml").write_text("config: a.yaml\n")
    (tmp_path / "c.yaml").write_text("config: missing.yaml\n")
    with pytest.raises(ValueError, match="cycle"):
        build_cli(["fit", "--config", str(tmp_path / "a.yaml")])
    with pytest.raises(FileNotFoundError, match=r"'missing\.yaml' is not a file"):
        build_cli(["fit", "--config", str(tmp_path / "c.yaml")])
