"""The package as a user gets it: a wheel installed non-editable into a fresh virtual environment,
every shipped config run by name from a directory that is not the checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

QUIET = [
    "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false",
    "--trainer.default_root_dir", "runs",
]  # fmt: skip
TINY_MODEL = [
    "--model.init_args.model_name", "ldifs-tiny-vit",
    "--model.init_args.pretrained", "demo",
]  # fmt: skip
TINY_SHAPES = [
    "--data", "ldifs_lightning.data.FineTuneDataModule",
    "--data.init_args.dataset", "shapes",
    "--data.init_args.image_size", "32",
    "--data.init_args.batch_size", "8",
    "--data.init_args.max_train_samples", "32",
]  # fmt: skip
# A data config's dataset swapped for an embedded one, its forgetting suite shrunk: what is run is
# the config's own keys and classes, from the installed package, without dataset files.
SMALL_SUITE = [
    "--trainer.callbacks.init_args.suite", "[digits]",
    "--trainer.callbacks.init_args.max_train_samples", "12",
    "--trainer.callbacks.init_args.max_test_samples", "8",
    "--trainer.callbacks.init_args.num_workers", "0",
    "--trainer.callbacks.init_args.cache_dir", "null",
]  # fmt: skip


def _source_files() -> list[str]:
    """What a clone plus the not-yet-committed, not-ignored files hold."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    return [name for name in listed if (REPO / name).is_file()]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """``bin/`` of a fresh venv holding the wheel built from the sources (no editable hook)."""
    if shutil.which("git") is None:
        pytest.skip("git lists the source files")
    root = tmp_path_factory.mktemp("installed")
    source = root / "source"
    for name in _source_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(root / "dist")]
    subprocess.run([*build, str(source)], check=True, timeout=600)
    wheel = next((root / "dist").glob("ldifs_lightning-*.whl"))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    # torch, lightning, ... come from this interpreter's site-packages: a plain path line (not
    # its .pth files, so not the checkout's editable hook).
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(purelib, "zz_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [*pip, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)],
        check=True,
        timeout=600,
    )
    return venv / "bin"


@pytest.fixture
def workdir(tmp_path) -> Path:
    assert not (tmp_path / "configs").exists()
    return tmp_path


def run(bin_dir: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {
        key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")
    }
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    return subprocess.run(
        [str(bin_dir / args[0]), *args[1:]],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=900,
    )


def test_the_wheel_is_what_runs_and_carries_the_configs(installed, workdir):
    result = run(
        installed,
        "python",
        "-c",
        "import ldifs_lightning, ldifs_lightning.config_files as c; "
        "print(ldifs_lightning.__file__); print(c.shipped_configs_dir())",
        cwd=workdir,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    package_file, configs_dir = result.stdout.split()
    assert str(installed.parent) in package_file and str(REPO) not in package_file
    assert Path(configs_dir) == Path(package_file).parent / "configs"
    shipped = sorted(p.relative_to(configs_dir) for p in Path(configs_dir).rglob("*.yaml"))
    in_repo = sorted(p.relative_to(REPO / "configs") for p in REPO.glob("configs/**/*.yaml"))
    assert shipped == in_repo


def _shipped(folder: str) -> list[str]:
    return sorted(f"{folder}/{path.stem}" for path in (REPO / "configs" / folder).glob("*.yaml"))


# ZSCL's reference images are ImageNet's in methods/zscl.yaml: an embedded domain here.
ZSCL_ON_DIGITS = ["--model.init_args.regularizers.init_args.reference_dataset", "digits",
                  "--model.init_args.regularizers.init_args.num_images", "16"]  # fmt: skip

# Each shipped config by name (no .yaml, no configs/), with overrides that make it small.
RUNS = (
    [(name, ["--data.init_args.batch_size", "8", "--data.init_args.max_train_samples", "32"])
     for name in _shipped("demo")]
    + [(name, [*TINY_SHAPES, *TINY_MODEL, *(ZSCL_ON_DIGITS if name == "methods/zscl" else [])])
       for name in [*_shipped("methods"), "base/vit_b32"]]
    + [(name, ["--config", "methods/ldifs", *TINY_MODEL, *TINY_SHAPES[2:], *SMALL_SUITE,
               "--data.init_args.download", "false", "--data.init_args.num_workers", "0"])
       for name in _shipped("data")]
    # The embedded continual sequence's stage configs are `ldifs fit` configs too.
    + [(name, ["--data.init_args.batch_size", "8", "--data.init_args.max_train_samples", "32"])
       for name in _shipped("continual/demo")]
)  # fmt: skip


@pytest.mark.parametrize(("name", "overrides"), RUNS, ids=[name for name, _ in RUNS])
def test_every_shipped_config_runs_by_name(installed, workdir, name, overrides):
    result = run(
        installed,
        "ldifs", "fit", "--config", name, *overrides, "--trainer.fast_dev_run", "1", *QUIET,
        cwd=workdir,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]


def test_the_continual_sequence_runs_by_name(installed, workdir):
    result = run(
        installed,
        "ldifs", "continual", "--config", "continual/demo", "--method", "continual/demo/lfl",
        "--epochs", "1", "--cache_dir", "null", "--max_train_samples", "40",
        "--max_test_samples", "20", "--out", "runs/sequence", "--fit_args",
        "[--data.init_args.max_train_samples=32,--data.init_args.max_test_samples=32]",
        cwd=workdir,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert (workdir / "runs" / "sequence" / "results.json").is_file()
    assert "Continual run digits -> fashion -> textures" in result.stdout


def test_the_fsdp_config_resolves_by_name(installed, workdir):
    # It needs 4 GPUs to run (tests/test_fsdp.py runs its model options on a CPU).
    result = run(
        installed, "ldifs", "fit", "--config", "data/eurosat", "--config", "scale/vit_l14_fsdp",
        "--print_config", cwd=workdir,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ModelParallelStrategy" in result.stdout and "ViT-L-14" in result.stdout


def test_demo_help_and_one_line_errors_from_the_installed_executable(installed, workdir):
    listing = run(installed, "ldifs", "--help", cwd=workdir)
    assert listing.returncode == 0 and "    demo " in listing.stdout
    demo_help = run(installed, "ldifs", "demo", "--help", cwd=workdir)
    assert demo_help.returncode == 0 and "--sweep" in demo_help.stdout
    for args, expected in [
        (["demo", "--methods", "nope"], "error: methods: "),
        (["fit", "--config", "no/such"], "error: config 'no/such' is neither a file"),
    ]:
        result = run(installed, "ldifs", *args, cwd=workdir)
        assert result.returncode == 2 and result.stderr.strip().splitlines() == [
            result.stderr.strip()
        ], result.stderr[-2000:]
        assert result.stderr.startswith(expected), result.stderr
    assert list(workdir.iterdir()) == []
