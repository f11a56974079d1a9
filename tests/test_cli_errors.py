"""Bad input to the `ldifs` command: one line on stderr, exit 2, nothing written.

Every error the README's "Errors" section promises for the command line is run here as a user
would meet it. The parametrised cases run ``ldifs_lightning.cli.main`` in this process (the
function the executable calls, so the same parsing, checks and printing: about 1 s each instead of
~10 s of interpreter start-up and imports); :func:`test_each_kind_of_error_through_the_executable`
and the single tests below run the installed ``ldifs`` executable in a subprocess, where the whole
output is what the user sees.
"""

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from ldifs_lightning.cli import TOOL_SUBCOMMANDS, main
from ldifs_lightning.cli_errors import list_value_hint, one_line_message
from tests.conftest import write_hf_tokenizer_config
from tests.data.array_files import RunsShellCommand, touch_command

REPO = Path(__file__).resolve().parents[1]
LDIFS = str(Path(sys.executable).parent / "ldifs")  # the console script pip installed
DEMO = str(REPO / "configs/demo/ldifs.yaml")


def run_ldifs(*args: str, cwd: Path, env: dict[str, str] | None = None):
    return subprocess.run(
        [LDIFS, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **(env or {})},
        timeout=300,
    )


@pytest.fixture
def run_main(monkeypatch, capsys):
    """``ldifs ARGS`` run in this process: ``main(ARGS)`` with its exit status and output."""

    def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
        monkeypatch.chdir(cwd)
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        monkeypatch.delenv("LDIFS_TRACEBACK", raising=False)
        capsys.readouterr()  # drop what earlier set-up printed
        code = 0
        try:
            main(list(args))
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else 1
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(list(args), code, captured.out, captured.err)

    return run


def assert_one_line_error(result, expected: str) -> None:
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert lines == [lines[-1]] and lines[-1].startswith("error: "), result.stderr[-2000:]
    assert expected in lines[-1]
    assert "Subclass types expect" not in lines[-1]  # jsonargparse's generic list is dropped
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--model.init_args.ldifs_weight", "-1"], "ldifs_weight=-1.0 must be >= 0"),
        (["--model.init_args.model_name", "ViT-B-33"], "unknown model_name 'ViT-B-33'"),
        (
            ["--model.init_args.model_name", "ViT-B-32", "--model.init_args.pretrained", "openai"],
            "pretrained='openai' for 'ViT-B-32' needs a download",
        ),
        (["--model.init_args.pretrained", "missing.pt"], "pretrained='missing.pt' is neither"),
        (["--model.init_args.taps", "[nope]"], "tap 'nope' is not a module"),
        (
            ["--model.init_args.normalize", "l2"],
            "model.init_args.normalize: Expected a typing.Literal['token', 'channel', 'none']",
        ),
        (["--data.init_args.dataset", "shape"], "unknown dataset 'shape' (did you mean"),
        (["--data.init_args.custom_templates", "[]"], "templates is empty"),
        (["--data.init_args.custom_templates", "[nothing]"], "template 'nothing' must be"),
        (["--data.init_args.batch_size", "abc"], "data.init_args.batch_size: Expected a"),
        (["--trainer.precision", "7"], "trainer.precision: Expected a typing.Literal"),
        (["--trainer.precision", "bf17"], "'bf16'] (got bf17)"),
        (["--no_such_option", "3"], "unrecognized arguments: --no_such_option 3"),
        (
            ["--model.init_args.regularizers", '[{"class_path": "ldifs_lightning.Nope"}]'],
            "model.init_args.regularizers: class_path 'ldifs_lightning.Nope': ldifs_lightning "
            "has no 'Nope'; allowed: L2SP, LDIFS, LwF, ZSCL or the import path of a Regularizer "
            "subclass",
        ),
        (
            [
                "--model",
                "ldifs_lightning.FineTuneModule",
                "--model.init_args.freeze_encoder",
                "true",
                "--model.init_args.regularizers",
                '[{"class_path": "ldifs_lightning.regularizers.L2SP"}]',
            ],
            "freeze_encoder=True (linear probing) keeps the encoder fixed, so the regularisers "
            "['L2SP'] have nothing to do",
        ),
        (
            ["--data.init_args.dataset", "cifar10", "--data.init_args.root", "no-data-here"],
            "cifar10: missing",
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_fit_bad_input_is_one_line_and_writes_nothing(args, expected, tmp_path, run_main):
    result = run_main(
        "fit", "--config", DEMO, *args, "--trainer.default_root_dir", "out", cwd=tmp_path
    )
    assert_one_line_error(result, expected)
    assert list(tmp_path.iterdir()) == []  # no log directory, no config.yaml, no cache


@pytest.mark.parametrize("subcommand", ["validate", "test"])
def test_validate_and_test_report_bad_input_as_one_line(subcommand, tmp_path):
    result = run_ldifs(
        subcommand, "--config", DEMO, "--model.init_args.ldifs_weight", "-2", cwd=tmp_path
    )
    assert_one_line_error(result, "ldifs_weight=-2.0 must be >= 0")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("subcommand", ["fit", "validate"])
def test_missing_ckpt_path_is_one_line_and_writes_nothing(subcommand, tmp_path):
    result = run_ldifs(
        subcommand, "--config", DEMO, "--ckpt_path", "gone.ckpt", "--trainer.default_root_dir",
        "out", cwd=tmp_path,
    )  # fmt: skip
    assert_one_line_error(result, "ckpt_path='gone.ckpt' is not a file")
    assert list(tmp_path.iterdir()) == []


def test_errors_raised_during_the_run_keep_their_traceback():
    """A ValueError from inside training is a bug to report, not a user error to shorten."""
    from ldifs_lightning.cli_errors import errors_as_one_line, mark_as_run_error

    error = ValueError("Expected more than 1 value per channel")
    mark_as_run_error(error)
    with pytest.raises(ValueError, match="more than 1 value"), errors_as_one_line():
        raise error
    with pytest.raises(SystemExit) as stopped, errors_as_one_line():
        raise ValueError("a user error before the run")
    assert stopped.value.code == 2


def test_export_bad_checkpoint_is_one_line(tmp_path):
    result = run_ldifs("export", "--ckpt_path", "none.ckpt", "--output_dir", "out", cwd=tmp_path)
    assert_one_line_error(result, "none.ckpt")
    assert list(tmp_path.iterdir()) == []


def test_traceback_switch_shows_the_full_traceback(tmp_path):
    result = run_ldifs(
        "fit",
        "--config",
        DEMO,
        "--model.init_args.ldifs_weight",
        "-1",
        cwd=tmp_path,
        env={"LDIFS_TRACEBACK": "1"},
    )
    assert result.returncode != 0
    assert "Traceback (most recent call last)" in result.stderr
    assert "ldifs_weight=-1.0 must be >= 0" in result.stderr


def test_help_lists_every_subcommand_and_each_has_its_own_help(tmp_path):
    listing = run_ldifs("--help", cwd=tmp_path)
    assert listing.returncode == 0
    for name in ["fit", "validate", "test", "predict", *TOOL_SUBCOMMANDS]:
        assert f"    {name} " in listing.stdout, name
    for name, option in [("export", "--output_dir"), ("demo", "--methods"), ("fit", "--trainer")]:
        own_help = run_ldifs(name, "--help", cwd=tmp_path)
        assert own_help.returncode == 0 and option in own_help.stdout, name
    assert set(TOOL_SUBCOMMANDS) >= {"export", "demo"}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["demo", "--methods", "nope"], "methods: Expected a <class 'list'>; Expected a typing."),
        (["demo", "--methods", "[ft,nope]"], "'ldifs-3000']. Got value: nope"),
        (["demo", "--sweep", "--methods", "[ft]"], "demo: pass --methods or --sweep, not both"),
        (["demo", "--threads", "-1"], "threads=-1 must be >= 0"),
        (["demo", "--configs", "nowhere"], "configs='nowhere' lacks ft.yaml, ldifs.yaml"),
        (["demo", "--nope", "1"], "unrecognized arguments: --nope 1"),
        (["demo", "--fit_args=[--trainer.nope=1]"], "unrecognized arguments: --trainer.nope=1"),
        (["fit", "--config", "no/such"], "config 'no/such' is neither a file in"),
        (["fit", "--config", "demo/ldfis"], "did you mean demo/ldifs"),
        (["fit", "--config", "demo/nope"], "named by folder/file: base/..., compare/..., "),
        (["export", "--config", "no/such"], "config 'no/such' is neither a file in"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_tool_and_config_bad_input_is_one_line(args, expected, tmp_path, run_main):
    out = ["--out", "out"] if args[0] == "demo" else ["--trainer.default_root_dir", "out"]
    result = run_main(*args, *(out if args[0] != "export" else []), cwd=tmp_path)
    assert_one_line_error(result, expected)
    assert list(tmp_path.iterdir()) == []  # nothing run, nothing written


# one_line_message on the shapes of message jsonargparse produces (written out by hand here).


def test_union_message_keeps_the_errors_and_drops_the_none_alternative():
    message = (
        "Does not validate against any of the Union subtypes\n"
        "Subtypes: [<class 'M'>, <class 'NoneType'>]\n"
        "Errors:\n"
        "  - ldifs_weight=-1.0 must be >= 0\n"
        "  - Expected a <class 'NoneType'>\n"
        "Given value type: <class 'Namespace'>\n"
        "Given value: Namespace(ldifs_weight=-1.0)"
    )
    assert one_line_message(ValueError(message)) == "ldifs_weight=-1.0 must be >= 0"


def test_parser_key_and_class_path_become_the_dotted_option_name():
    message = (
        'Parser key "model":\n'
        "  Does not validate against any of the Union subtypes\n"
        "  Subtypes: [<class 'M'>, <class 'NoneType'>]\n"
        "  Errors:\n"
        "    - Problem with given class_path 'pkg.M':\n"
        '        Parser key "normalize":\n'
        "          Expected a typing.Literal['token']. Got value: l2\n"
        "    - Expected a <class 'NoneType'>\n"
        "  Given value type: <class 'Namespace'>"
    )
    assert one_line_message(ValueError(message)) == (
        "model.init_args.normalize: Expected a typing.Literal['token']. Got value: l2"
    )


def test_nested_union_names_the_inner_option_and_what_it_allows():
    """A bad class in a class's list argument: jsonargparse nests one Union message in another."""
    message = (
        'Parser key "model":\n'
        "  Does not validate against any of the Union subtypes\n"
        "  Subtypes: [<class 'ldifs_lightning.modules.fine_tuner.CLIPFineTuner'>, <class "
        "'NoneType'>]\n"
        "  Errors:\n"
        "    - Problem with given class_path 'ldifs_lightning.LDIFSModule':\n"
        '        Parser key "regularizers":\n'
        "          Does not validate against any of the Union subtypes\n"
        "          Subtypes: [list[ldifs_lightning.regularizers.base.Regularizer], <class "
        "'NoneType'>]\n"
        "          Errors:\n"
        "            - Problem with given class_path 'ldifs_lightning.regularizers.LDIF':\n"
        "                module 'ldifs_lightning.regularizers' has no attribute 'LDIF'\n"
        "            - Expected a <class 'NoneType'>\n"
        "          Given value type: <class 'list'>\n"
        "          Given value: [{'class_path': 'ldifs_lightning.regularizers.LDIF'}]\n"
        "    - Expected a <class 'NoneType'>\n"
    )
    assert one_line_message(ValueError(message)) == (
        "model.init_args.regularizers: class_path 'ldifs_lightning.regularizers.LDIF': "
        "ldifs_lightning.regularizers has no 'LDIF'; allowed: L2SP, LDIFS, LwF, ZSCL or the "
        "import path of a Regularizer subclass"
    )


def test_bad_callback_class_names_ours_and_lightnings_package():
    message = (
        'Parser key "trainer.callbacks":\n'
        "  Does not validate against any of the Union subtypes\n"
        "  Subtypes: [list[lightning.pytorch.callbacks.callback.Callback], <class 'NoneType'>]\n"
        "  Errors:\n"
        "    - Problem with given class_path 'Nope':\n"
        "        Expected a dot import path string: Nope\n"
        "    - Expected a <class 'NoneType'>\n"
    )
    assert one_line_message(ValueError(message)) == (
        "trainer.callbacks: class_path 'Nope' is neither a known class name nor an import path; "
        "allowed: ConceptForgettingCallback, EncoderWeightAveraging, WiSEFTCallback, a class of "
        "lightning.pytorch.callbacks or the import path of a Callback subclass"
    )


def test_a_bad_logger_name_among_other_alternatives_names_the_loggers():
    message = (
        'Parser key "trainer.logger":\n\n'
        "  - Expected a path but Tensorboard either not accessible or invalid\n"
        "  - Does not validate against any of the Union subtypes\n"
        "  Subtypes: [<class 'lightning.pytorch.loggers.logger.Logger'>, collections.abc.Iterable"
        "[lightning.pytorch.loggers.logger.Logger], <class 'bool'>, <class 'NoneType'>]\n"
        "  Errors:\n"
        "    - Expected a dot import path string: Tensorboard\n"
        "    - Expected a <class 'collections.abc.Iterable'>\n"
        "    - Expected a <class 'bool'>\n"
        "    - Expected a <class 'NoneType'>\n"
        "  Given value type: <class 'str'>\n"
        "  Given value: Tensorboard"
    )
    line = one_line_message(ValueError(message))
    # Which loggers are listed is Lightning's to say (those its loggers package exports).
    assert line.startswith(
        "trainer.logger: class_path 'Tensorboard' is neither a known class name nor an import "
        "path; allowed: CSVLogger, "
    )
    assert "TensorBoardLogger" in line
    assert line.endswith(" or the import path of a Logger subclass")


def test_a_missing_module_inside_a_valid_class_is_not_called_a_bad_class_path():
    message = "Problem with given class_path 'ldifs_lightning.LDIFSModule': No module named 'x'"
    assert one_line_message(ValueError(message)) == message
    message = "Problem with given class_path 'nosuch.Thing': No module named 'nosuch'"
    assert one_line_message(ValueError(message)) == (
        "class_path 'nosuch.Thing': No module named 'nosuch'"
    )


def test_a_model_whose_tokenizer_needs_transformers_says_so(tmp_path, run_main, monkeypatch):
    """SigLIP's tokenizer comes from transformers, which the package does not install."""
    monkeypatch.setitem(sys.modules, "transformers", None)  # as on a machine without it
    name = write_hf_tokenizer_config(tmp_path / "configs")
    (tmp_path / "run").mkdir()
    result = run_main("fit", "--config", DEMO, "--model.init_args.model_name", name,
                      "--model.init_args.pretrained", "null", "--trainer.default_root_dir", "out",
                      cwd=tmp_path / "run")  # fmt: skip
    assert_one_line_error(result, f"model_name '{name}' uses a Hugging Face tokenizer, which "
                          "needs the transformers package: pip install transformers")  # fmt: skip
    assert list((tmp_path / "run").iterdir()) == []


def test_plain_multi_line_message_is_joined():
    assert one_line_message(ValueError("first\n  second ")) == "first second"


def test_subclass_forms_after_a_callback_error_are_dropped():
    message = (
        'Parser key "trainer.callbacks":\n  Problem with given class_path "X":\n'
        "    Expected a typing.Literal['a']. Got value: b\n"
        "  Not a valid subclass of Callback\n  Subclass types expect one of:\n"
        "  - a class path (str)\n  - a dict with class_path entry"
    )
    assert one_line_message(ValueError(message)) == (
        'trainer.callbacks: Problem with given class_path "X": '
        "Expected a typing.Literal['a']. Got value: b"
    )


def _garbage_cifar10(root: Path) -> None:
    batches = root / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"]:
        (batches / name).write_bytes(b"not a pickle at all")


def _crafted_cifar10(root: Path, marker: Path) -> None:
    _garbage_cifar10(root)
    crafted = pickle.dumps(RunsShellCommand(touch_command(marker)), protocol=2)
    for path in (root / "cifar-10-batches-py").iterdir():
        path.write_bytes(crafted)


def _folder_with_too_many_names(root: Path) -> None:
    for name in ("cat", "dog"):
        (root / "pets" / "train" / name).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(root / "pets" / "train" / name / "0.png")
    (root / "pets" / "classnames.txt").write_text("cat\ndog\nbird\n")


def _suite_config(root: Path, init_args: str) -> None:
    (root / "suite.yaml").write_text(
        "trainer:\n  callbacks:\n    - class_path: ldifs_lightning.ConceptForgettingCallback\n"
        f"      init_args: {init_args}\n"
    )


@pytest.mark.parametrize(
    ("prepare", "args", "expected"),
    [
        pytest.param(
            lambda root: (root / "l2sp.yaml").write_text(
                "model:\n  init_args:\n    regularizers:\n"
                "      - class_path: ldifs_lightning.regularizers.L2SP\n"
                "        init_args:\n          weight: -1\n"
            ),
            ["--config", "{inputs}/l2sp.yaml"],
            "L2SP: weight=-1.0 must be >= 0",
            id="negative-regulariser-weight",
        ),
        pytest.param(
            _garbage_cifar10,
            [
                "--data.init_args.dataset", "cifar10",
                "--data.init_args.root", "{inputs}",
                "--data.init_args.verify_checksums", "false",
            ],
            "batches.meta is not a CIFAR meta file: not a valid pickle",
            id="corrupt-array-file",
        ),
        pytest.param(
            "crafted",
            [
                "--data.init_args.dataset", "cifar10",
                "--data.init_args.root", "{inputs}",
                "--data.init_args.verify_checksums", "false",
            ],
            "the pickle asks for",
            id="unsafe-pickle",
        ),
        pytest.param(
            _folder_with_too_many_names,
            ["--data.init_args.dataset", "folder:{inputs}/pets"],
            "has 3 names but",
            id="folder-layout",
        ),
        pytest.param(
            None,
            ["--data.init_args.image_size", "64"],
            "data image_size=64 but ldifs-tiny-vit expects 32",
            id="image-size-mismatch",
        ),
        pytest.param(
            lambda root: _suite_config(root, "{suite: [cifar10], root: nowhere}"),
            ["--config", "{inputs}/suite.yaml"],
            "cifar10: missing",
            id="suite-files-missing",
        ),
        pytest.param(
            lambda root: (root / "wiseft.yaml").write_text(
                "trainer:\n  callbacks:\n"
                "    - class_path: ldifs_lightning.callbacks.WiSEFTCallback\n"
            ),
            ["--config", "{inputs}/wiseft.yaml", "--model.init_args.pretrained", "null"],
            "WiSEFTCallback interpolates towards the pre-trained weights",
            id="wiseft-without-pretrained",
        ),
        pytest.param(
            lambda root: _suite_config(root, "{suite: []}"),
            ["--config", "{inputs}/suite.yaml"],
            "the forgetting suite is empty",
            id="empty-suite",
        ),
        pytest.param(
            lambda root: _suite_config(root, "{suite: [digits], metrics: [accuracy]}"),
            ["--config", "{inputs}/suite.yaml"],
            "trainer.callbacks.init_args.metrics: Expected a typing.Literal['linear_probe', "
            "'zero_shot']. Got value: accuracy",
            id="unknown-metric",
        ),
    ],
)  # fmt: skip
def test_fit_bad_files_and_combinations_are_one_line(prepare, args, expected, tmp_path, run_main):
    inputs, run_dir = tmp_path / "inputs", tmp_path / "run"
    inputs.mkdir()
    run_dir.mkdir()
    marker = tmp_path / "code-ran"
    if prepare == "crafted":
        _crafted_cifar10(inputs, marker)
    elif prepare is not None:
        prepare(inputs)
    args = [arg.format(inputs=inputs) for arg in args]
    result = run_main(
        "fit", "--config", DEMO, *args, "--trainer.default_root_dir", "out", cwd=run_dir
    )
    assert_one_line_error(result, expected)
    assert list(run_dir.iterdir()) == []
    assert not marker.exists()  # the crafted pickle's command never ran


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--output_dir", "out"], "no model_name and pretrained: give ckpt_path"),
        (
            ["--ckpt_path", "a.ckpt", "--model_name", "ViT-B-32", "--output_dir", "out"],
            "ckpt_path with model_name='ViT-B-32'",
        ),
        (
            [
                "--model_name", "ldifs-tiny-vit", "--pretrained", "demo",
                "--dataset", "eurosatt", "--output_dir", "out",
            ],
            "unknown dataset 'eurosatt'",
        ),
    ],
    ids=["neither", "both", "unknown-dataset"],
)  # fmt: skip
def test_export_bad_options_are_one_line(args, expected, tmp_path, run_main):
    result = run_main("export", *args, cwd=tmp_path)
    assert_one_line_error(result, expected)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["fit", "--config", DEMO, "--model.init_args.ldifs_weight", "-1"], "ldifs_weight=-1.0"),
        (["fit", "--config", DEMO, "--data.init_args.root", "x", "--data.init_args.dataset",
          "cifar10"], "cifar10: missing"),
        (["fit", "--config", "no/such"], "config 'no/such' is neither a file in"),
        (["demo", "--methods", "nope"], "methods: Expected a"),
        (["export", "--output_dir", "out"], "no model_name and pretrained: give ckpt_path"),
        (["fit", "--config", DEMO, "--model", "LDIFSModul"], "model: class_path 'LDIFSModul' is "
         "neither a known class name nor an import path; allowed: FLYPModule, FineTuneModule, "
         "LDIFSModule or the import path of a CLIPFineTuner subclass"),
        (["demo", "--methods", "ft", "ldifs"], "unrecognized arguments: ldifs; --methods takes "
         "one value, so 'ldifs' was left over (a list is --methods '[ft,ldifs]')"),
    ],
    ids=["fit-value", "fit-files", "config-name", "tool-option", "export", "class-path",
         "list-spaced"],
)  # fmt: skip
def test_each_kind_of_error_through_the_executable(args, expected, tmp_path):
    """One case of each parametrised group above, through the installed ``ldifs`` executable."""
    result = run_ldifs(*args, cwd=tmp_path)
    assert_one_line_error(result, expected)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("message", "argv", "hint"),
    [
        ("unrecognized arguments: b c", ["x", "--opt", "a", "b", "c", "--n", "1"],
         "; --opt takes one value, so 'b' was left over (a list is --opt '[a,b,c]')"),
        ("unrecognized arguments: data/eurosat", ["fit", "--config", "methods/ldifs",
         "data/eurosat"], "; --config takes one file or name: repeat it (--config methods/ldifs "
         "--config data/eurosat)"),
        ("unrecognized arguments: b", ["-c", "a", "b"], "; -c takes one file or name: repeat it "
         "(-c a -c b)"),
        ("unrecognized arguments: --nope 1", ["--nope", "1"], ""),  # an unknown option: no hint
        ("unrecognized arguments: b", ["--opt=a", "b"], ""),  # not "--opt a b"
        ("methods: Expected a list", ["--methods", "a", "b"], ""),  # another error
    ],
)  # fmt: skip
def test_list_value_hint_applies_only_to_a_left_over_word(message, argv, hint):
    assert list_value_hint(message, argv) == hint
