"""Array-format datasets (CIFAR, MNIST, SVHN, STL-10) fail at setup with one line naming the bad
file, and untrusted pickles are read as data, never as code."""

from __future__ import annotations

import io
import os
import pickle
import pickletools
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from ldifs_lightning.data import FineTuneDataModule
from ldifs_lightning.data.errors import (
    ChecksumMismatchError,
    CorruptDataFileError,
    DatasetError,
    UnsafePickleError,
)
from ldifs_lightning.data.safe_pickle import (
    RefusedGlobalError,
    RestrictedUnpickler,
    load_data_pickle,
)
from ldifs_lightning.data.sources.imagenet import read_meta_wnids
from tests.data.array_files import (
    GARBAGE,
    RunsEval,
    RunsShellCommand,
    forged_dtype_pickle,
    python2_pickle,
    touch_command,
    truncate,
    write_eval_source,
)
from tests.data.fake_datasets import label_of, write_fake_dataset

#: The train file of each array-format dataset that the tests damage (what ``setup("fit")`` reads).
TRAIN_FILE = {
    "cifar10": "cifar-10-batches-py/data_batch_3",
    "cifar100": "cifar-100-python/train",
    "mnist": "MNIST/raw/train-images-idx3-ubyte",
    "svhn": "svhn/train_32x32.mat",
    "stl10": "stl10_binary/train_X.bin",
}
NAMES = sorted(TRAIN_FILE)
#: How each dataset's fix starts (the official source to get the file from again).
FIX = {
    "cifar10": "; delete it and set download: true, or extract cifar-10-python.tar.gz (md5 c58f",
    "cifar100": "; delete it and set download: true, or extract cifar-100-python.tar.gz (md5 eb90",
    "mnist": "; delete it and set download: true, or put the gunzipped official file (",
    "svhn": "; delete it and set download: true, or download http://ufldl.stanford.edu/",
    "stl10": "; delete it and set download: true, or extract stl10_binary.tar.gz (md5 91f7",
}


def _fit_error(name: str, root: Path, error_type: type[DatasetError] = CorruptDataFileError) -> str:
    """The one-line message with which ``setup("fit")`` refuses the copy under ``root``."""
    data = FineTuneDataModule(name, root=str(root), image_size=32, verify_checksums=False)
    with pytest.raises(error_type) as error:
        data.setup("fit")
    message = str(error.value)
    assert "\n" not in message
    assert data.train_set is None  # nothing half-set-up
    return message


def _rewrite_pickle(path: Path, change) -> None:
    """Load one of the test's own (trusted) pickles, change it, and write it back as protocol 2."""
    with path.open("rb") as handle:
        content = pickle.load(handle)
    change(content)
    path.write_bytes(pickle.dumps(content, protocol=2))


def _write_idx(path: Path, values: np.ndarray) -> None:
    header = bytes([0, 0, 8, values.ndim]) + np.array(values.shape, ">u4").tobytes()
    path.write_bytes(header + values.astype(np.uint8).tobytes())


# ----------------------------------------------------------------------------------------------
# Truncated, garbage and mismatched files fail at setup, naming the file.


@pytest.mark.parametrize("name", NAMES)
def test_valid_copy_loads(name, tmp_path):
    copy = write_fake_dataset(name, tmp_path)
    data = FineTuneDataModule(name, root=str(tmp_path), image_size=32, verify_checksums=False)
    data.setup("fit")
    assert len(data.train_set) + len(data.val_set) == copy.num_train
    for index in range(len(data.train_set)):
        image, label = data.train_set[index]
        assert label_of(image) == label


TRUNCATED = {
    "cifar10": "is not a CIFAR batch: truncated pickle (its {size:,} bytes end before the pickle "
    "does)",
    "cifar100": "is not a CIFAR batch: truncated pickle (its {size:,} bytes end before the pickle "
    "does)",
    # 16-byte header, then 30 images of 28 x 28 bytes.
    "mnist": "is not an MNIST images file: truncated idx file (read {size:,} of 23,536 bytes: a "
    "header and 30 x 28 x 28 values, as its header says)",
    # The cut falls inside X, the first variable: it ends where a file holding only X ends.
    "svhn": "is not an SVHN .mat file: truncated MATLAB file (its {size:,} bytes end inside a "
    "variable that ends at byte {x_end:,})",
    # 20 images of 3 x 96 x 96 bytes.
    "stl10": "is not an STL-10 images file: its {size:,} bytes are not a whole number of 96x96 "
    "RGB images (27,648 bytes each), so it is truncated or another file",
}


@pytest.mark.parametrize("name", NAMES)
def test_truncated_file_is_named_at_setup(name, tmp_path):
    write_fake_dataset(name, tmp_path)
    path = tmp_path / TRAIN_FILE[name]
    x_end = None
    if name == "svhn":
        scipy.io.savemat(tmp_path / "x_only.mat", {"X": scipy.io.loadmat(path)["X"]})
        x_end = (tmp_path / "x_only.mat").stat().st_size
    full = path.stat().st_size
    size = truncate(path)
    assert 0 < size < full
    message = _fit_error(name, tmp_path)
    expected = TRUNCATED[name].format(size=size, x_end=x_end)
    assert message.startswith(f"{name}: {path} {expected}{FIX[name]}"), message


GARBAGE_REASON = {
    "cifar10": "is not a CIFAR batch: not a valid pickle (invalid load key, '\\xa7'.)",
    "cifar100": "is not a CIFAR batch: not a valid pickle (invalid load key, '\\xa7'.)",
    "mnist": "is not an MNIST images file: it starts with a7 20 74 68, not the idx magic number "
    "00 00 08 03 (3-d array of unsigned bytes)",
    "svhn": "is not an SVHN .mat file: not a MATLAB file scipy can read (scipy: Unknown mat file "
    "type, version",
    "stl10": f"is not an STL-10 images file: its {len(GARBAGE):,} bytes are not a whole number",
}


@pytest.mark.parametrize("name", NAMES)
def test_garbage_file_is_named_at_setup(name, tmp_path):
    write_fake_dataset(name, tmp_path)
    path = tmp_path / TRAIN_FILE[name]
    path.write_bytes(GARBAGE)
    message = _fit_error(name, tmp_path)
    assert message.startswith(f"{name}: {path} {GARBAGE_REASON[name]}"), message
    assert FIX[name] in message


def test_garbage_stl10_labels_are_named(tmp_path):
    write_fake_dataset("stl10", tmp_path)
    path = tmp_path / "stl10_binary" / "train_y.bin"
    path.write_bytes(bytes([3, 0, 11, 200] * 5))  # 20 bytes, as many as images, 3 of them invalid
    message = _fit_error("stl10", tmp_path)
    assert message.startswith(
        f"stl10: {path} is not an STL-10 labels file: it has labels [0, 11, 200] outside 1..10"
    )


def test_gzipped_mnist_file_says_to_gunzip(tmp_path):
    import gzip

    write_fake_dataset("mnist", tmp_path)
    path = tmp_path / TRAIN_FILE["mnist"]
    path.write_bytes(gzip.compress(path.read_bytes()))
    assert f"{path} is not an MNIST images file: it is still gzip-compressed (gunzip it)" in (
        _fit_error("mnist", tmp_path)
    )


def test_mnist_file_with_bytes_past_its_header_is_refused(tmp_path):
    write_fake_dataset("mnist", tmp_path)
    path = tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes() + b"\x00\x01")
    message = _fit_error("mnist", tmp_path)
    # 8-byte header and 30 labels.
    assert f"{path} is not an MNIST labels file: idx file too long (read 40 of 38 bytes" in message


def test_mnist_labels_outside_0_to_9_and_images_not_28x28_are_named(tmp_path):
    write_fake_dataset("mnist", tmp_path)
    raw = tmp_path / "MNIST" / "raw"
    labels = raw / "train-labels-idx1-ubyte"
    _write_idx(labels, np.array([0, 10, 3, 255] + [1] * 26))
    assert f"mnist: {labels} has labels [10, 255] outside 0..9" in _fit_error("mnist", tmp_path)
    images = raw / "train-images-idx3-ubyte"
    _write_idx(images, np.zeros((30, 14, 14)))
    assert f"mnist: {images} holds 14x14 images, MNIST's are 28x28" in _fit_error("mnist", tmp_path)


def _cifar_count_mismatch(root: Path, name: str) -> tuple[Path, str]:
    path = root / TRAIN_FILE[name]
    key = "labels" if name == "cifar10" else "fine_labels"
    _rewrite_pickle(path, lambda batch: batch[key].pop())
    rows = 4 if name == "cifar10" else 200
    return path, f"{path} holds {rows} images and {rows - 1} labels"


def _mnist_count_mismatch(root: Path, name: str) -> tuple[Path, str]:
    raw = root / "MNIST" / "raw"
    labels = np.frombuffer((raw / "train-labels-idx1-ubyte").read_bytes()[8:], np.uint8)
    _write_idx(raw / "train-labels-idx1-ubyte", labels[:27])
    images, labels_path = raw / "train-images-idx3-ubyte", raw / "train-labels-idx1-ubyte"
    return labels_path, f"{images} holds 30 images but {labels_path} holds 27 labels"


def _svhn_count_mismatch(root: Path, name: str) -> tuple[Path, str]:
    path = root / TRAIN_FILE[name]
    content = scipy.io.loadmat(path)
    scipy.io.savemat(path, {"X": content["X"], "y": content["y"][:-1]})
    return path, f"{path} holds 30 images and 29 labels"


def _stl10_count_mismatch(root: Path, name: str) -> tuple[Path, str]:
    labels = root / "stl10_binary" / "train_y.bin"
    labels.write_bytes(labels.read_bytes()[:-2])
    images = root / TRAIN_FILE[name]
    return labels, f"{images} holds 20 images but {labels} holds 18 labels"


MISMATCH = {
    "cifar10": _cifar_count_mismatch,
    "cifar100": _cifar_count_mismatch,
    "mnist": _mnist_count_mismatch,
    "svhn": _svhn_count_mismatch,
    "stl10": _stl10_count_mismatch,
}


@pytest.mark.parametrize("name", NAMES)
def test_images_and_labels_of_different_counts_fail_at_setup(name, tmp_path):
    write_fake_dataset(name, tmp_path)
    _, expected = MISMATCH[name](tmp_path, name)
    message = _fit_error(name, tmp_path)
    assert message.startswith(f"{name}: {expected}; every image needs one label{FIX[name]}")


def test_cifar_batch_of_the_wrong_arrays_is_named(tmp_path):
    write_fake_dataset("cifar10", tmp_path)
    path = tmp_path / TRAIN_FILE["cifar10"]
    _rewrite_pickle(path, lambda batch: batch.update(data=batch["data"].reshape(4, 3, 1024)))
    assert (
        f"{path} is not a CIFAR batch: its 'data' is a uint8 array of shape (4, 3, 1024), not"
        in (_fit_error("cifar10", tmp_path))
    )
    path.write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    assert f"{path} is not a CIFAR batch: it holds a list, not a dict with 'data' and 'labels'" in (
        _fit_error("cifar10", tmp_path)
    )


def test_svhn_labels_outside_1_to_10_are_named(tmp_path):
    write_fake_dataset("svhn", tmp_path)
    path = tmp_path / TRAIN_FILE["svhn"]
    content = scipy.io.loadmat(path)
    digits = content["y"].copy()
    digits[:2, 0] = [0, 11]
    scipy.io.savemat(path, {"X": content["X"], "y": digits})
    assert f"{path} is not an SVHN .mat file: its y has labels [0, 11] outside 1..10" in (
        _fit_error("svhn", tmp_path)
    )


# ----------------------------------------------------------------------------------------------
# The restricted unpickler: real-format pickles load, code-running ones are refused.


def _cifar_batch() -> dict:
    rng = np.random.default_rng(0)
    return {
        "batch_label": "training batch 1 of 5",
        "labels": [6, 9, 9, 4],
        "data": rng.integers(0, 256, (4, 3072), dtype=np.uint8),
        "filenames": ["leptodactylus_pentadactylus_s_000004.png", "camion_s_000148.png"] * 2,
    }


def _equal(loaded: dict, expected: dict) -> None:
    assert loaded.keys() == expected.keys()
    for key, value in expected.items():
        if isinstance(value, np.ndarray):
            assert loaded[key].dtype == value.dtype
            np.testing.assert_array_equal(loaded[key], value)
        else:
            assert loaded[key] == value


def test_python2_cifar_pickle_needs_only_numpy_array_globals():
    """The official files were written by Python 2's cPickle: check what their pickles name."""
    content = python2_pickle(_cifar_batch())
    named = {arg for op, arg, _ in pickletools.genops(content) if op.name == "GLOBAL"}
    assert named == {"numpy.core.multiarray _reconstruct", "numpy ndarray", "numpy dtype"}


def test_python2_cifar_pickle_loads_as_pickle_does():
    content = python2_pickle(_cifar_batch())
    expected = pickle.loads(content, encoding="latin1")
    loaded = RestrictedUnpickler(io.BytesIO(content), encoding="latin1").load()
    _equal(loaded, expected)
    _equal(loaded, _cifar_batch())


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_every_protocol_of_a_cifar_batch_loads_as_pickle_does(protocol):
    content = pickle.dumps(_cifar_batch(), protocol=protocol)
    loaded = RestrictedUnpickler(io.BytesIO(content), encoding="latin1").load()
    _equal(loaded, pickle.loads(content, encoding="latin1"))


def test_python2_cifar_files_load_through_the_datamodule(tmp_path):
    copy = write_fake_dataset("cifar10", tmp_path)
    for path in (tmp_path / "cifar-10-batches-py").iterdir():
        with path.open("rb") as handle:
            path.write_bytes(python2_pickle(pickle.load(handle)))
    data = FineTuneDataModule("cifar10", root=str(tmp_path), image_size=32, verify_checksums=False)
    data.setup("fit")
    assert len(data.train_set) + len(data.val_set) == copy.num_train
    image, label = data.train_set[0]
    assert label_of(image) == label


def _malicious(marker: Path, how: str):
    if how == "os.system":
        return RunsShellCommand(touch_command(marker))
    return RunsEval(write_eval_source(marker))


@pytest.mark.parametrize("how", ["os.system", "eval"])
@pytest.mark.parametrize("protocol", [2, 4])
def test_pickle_that_runs_code_is_the_control(how, protocol, tmp_path):
    """Python's full pickle runs these files' code: what the refusal tests below guard against."""
    marker = tmp_path / "ran"
    content = pickle.dumps({"data": _malicious(marker, how), "labels": []}, protocol=protocol)
    pickle.loads(content)
    assert marker.exists()


@pytest.mark.parametrize(("how", "named"), [("os.system", "system"), ("eval", "eval")])
@pytest.mark.parametrize("protocol", [2, 4])
def test_pickle_that_runs_code_is_refused_by_the_unpickler(how, named, protocol, tmp_path):
    marker = tmp_path / "ran"
    content = pickle.dumps({"data": _malicious(marker, how), "labels": []}, protocol=protocol)
    with pytest.raises(RefusedGlobalError) as error:
        RestrictedUnpickler(io.BytesIO(content)).load()
    assert error.value.name == named
    assert not marker.exists()


@pytest.mark.parametrize(("name", "how"), [("cifar10", "os.system"), ("cifar100", "eval")])
def test_crafted_cifar_batch_is_refused_at_setup_and_runs_nothing(name, how, tmp_path):
    write_fake_dataset(name, tmp_path)
    marker = tmp_path / "ran"
    path = tmp_path / TRAIN_FILE[name]
    _rewrite_pickle(path, lambda batch: batch.update(data=_malicious(marker, how)))
    message = _fit_error(name, tmp_path, UnsafePickleError)
    refused = f"{os.system.__module__}.system" if how == "os.system" else "__builtin__.eval"
    assert message.startswith(
        f"{name}: {path} is not a CIFAR batch: the pickle asks for {refused}, which plain data "
        "never needs and which could run code (refused;"
    ), message
    assert FIX[name] in message
    assert not marker.exists()


def test_crafted_cifar_meta_file_is_refused(tmp_path):
    write_fake_dataset("cifar10", tmp_path)
    marker = tmp_path / "ran"
    path = tmp_path / "cifar-10-batches-py" / "batches.meta"
    path.write_bytes(pickle.dumps({"label_names": RunsShellCommand(touch_command(marker))}, 2))
    message = _fit_error("cifar10", tmp_path, UnsafePickleError)
    assert message.startswith(f"cifar10: {path} is not a CIFAR meta file: the pickle asks for")
    assert not marker.exists()


def test_crafted_batch_with_checksums_on_fails_the_md5_check_first(tmp_path):
    write_fake_dataset("cifar10", tmp_path)
    marker = tmp_path / "ran"
    path = tmp_path / TRAIN_FILE["cifar10"]
    _rewrite_pickle(path, lambda batch: batch.update(data=RunsShellCommand(touch_command(marker))))
    data = FineTuneDataModule("cifar10", root=str(tmp_path), image_size=32)
    with pytest.raises(ChecksumMismatchError, match=r"has md5 .*set verify_checksums: false"):
        data.setup("fit")
    assert not marker.exists()


# ----------------------------------------------------------------------------------------------
# ImageNet's meta.bin: torch.load(weights_only=True), with one-line errors.


def test_imagenet_meta_reads_a_torchvision_meta_file(tmp_path):
    path = tmp_path / "meta.bin"
    torch.save(({"n02": ("b",), "n01": ("a",)}, ["n01", "n02"]), path)
    assert read_meta_wnids(path) == ["n01", "n02"]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "the file is empty"),
        (GARBAGE, "torch.load(weights_only=True) refused it: Unsupported operand 167;"),
        ("truncated", "PytorchStreamReader failed reading zip archive"),
        ("list", "it holds a list, not the pair (wnid_to_classes, val_wnids)"),
    ],
)
def test_bad_imagenet_meta_is_named(content, reason, tmp_path):
    path = tmp_path / "meta.bin"
    if content == "truncated":
        torch.save(({"n01": ("a",)}, ["n01"]), path)
        truncate(path)
    elif content == "list":
        torch.save([1, 2, 3], path)
    else:
        path.write_bytes(content)
    with pytest.raises(CorruptDataFileError) as error:
        read_meta_wnids(path)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"imagenet: {path} is not torchvision's ImageNet meta.bin: {reason}")
    assert "ILSVRC2012_devkit_t12.tar.gz" in message


def test_crafted_imagenet_meta_runs_nothing(tmp_path):
    marker, path = tmp_path / "ran", tmp_path / "meta.bin"
    torch.save(({"n01": RunsShellCommand(touch_command(marker))}, ["n01"]), path)
    refused = re.escape(f"GLOBAL {os.system.__module__}.system")
    with pytest.raises(CorruptDataFileError, match=f"refused it: .*{refused}"):
        read_meta_wnids(path)
    assert not marker.exists()


@pytest.mark.parametrize("form", ["scalar", "array"])
def test_forged_dtype_flags_are_refused_before_numpy_reads_pointers(form, tmp_path):
    """Only allowed globals, but an object dtype disguised by its state: refused in one line.

    Run in a subprocess: before the check, loading the scalar form crashed the interpreter.
    """
    path = tmp_path / "data_batch_1"
    path.write_bytes(forged_dtype_pickle(form))
    script = (
        "from pathlib import Path\n"
        "from ldifs_lightning.data.safe_pickle import load_data_pickle\n"
        "from ldifs_lightning.data.errors import UnsafePickleError\n"
        "try:\n"
        f"    load_data_pickle(Path({str(path)!r}), dataset='cifar10', kind='a CIFAR batch',"
        " fix='replace it')\n"
        "except UnsafePickleError as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == (
        f"cifar10: {path} is not a CIFAR batch: numpy dtype 'O8' is not a plain number, bytes or "
        "string type (refused: only such arrays are read); replace it"
    )


@pytest.mark.parametrize("protocol", [2, 5])
def test_plain_dtypes_of_every_byte_order_and_width_load_as_plain_arrays(protocol, tmp_path):
    content = {
        "big": np.arange(6, dtype=">i4").reshape(2, 3),
        "little": np.linspace(0, 1, 4, dtype="<f8"),
        "bytes": np.array([b"ab", b"c"], dtype="S2"),
        "text": np.array(["xyz", "w"], dtype="U3"),
        "flag": np.array([True, False]),
        "scalar": np.float32(2.5),
    }
    path = tmp_path / "arrays.pkl"
    path.write_bytes(pickle.dumps(content, protocol=protocol))
    loaded = load_data_pickle(path, dataset="test", kind="arrays", fix="")
    expected = pickle.loads(path.read_bytes())  # numpy itself may return native byte order
    for key, value in content.items():
        assert type(loaded[key]) is type(value)
        assert loaded[key].dtype == expected[key].dtype
        np.testing.assert_array_equal(loaded[key], value)


def test_a_corrupt_imagenet_devkit_is_one_line(tmp_path):
    # No meta.bin: torchvision would build it from the devkit archive, whose md5 it checks first.
    from ldifs_lightning.data.sources.imagenet import load_imagenet

    base = tmp_path / "imagenet"
    (base / "val" / "n01440764").mkdir(parents=True)
    (base / "ILSVRC2012_devkit_t12.tar.gz").write_bytes(b"not a tar archive")
    with pytest.raises(CorruptDataFileError) as error:
        load_imagenet(tmp_path, "test")
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(
        f"imagenet: torchvision could not build meta.bin from the devkit in {base}: "
    )
    assert "ILSVRC2012_devkit_t12.tar.gz (md5 fa75699e90414af021442c21a62c3abf)" in message
