import os
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from ldifs_lightning.evaluation import extract_features


def _encoder(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 8), nn.Dropout(0.5), nn.Linear(8, 5))


def _dataset(n: int, seed: int = 1) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, 4, 4, generator=generator)
    return TensorDataset(images, torch.arange(n) % 3)


def _manual(encoder: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Row by row, without the function under test: Flatten, Linear, (eval) Dropout, Linear."""
    first, last = encoder[1], encoder[3]
    rows = []
    for image in images:
        hidden = first.weight.detach() @ image.reshape(-1) + first.bias.detach()
        out = last.weight.detach() @ hidden + last.bias.detach()
        rows.append(out / out.norm())
    return torch.stack(rows)


def test_matches_manual_computation_in_order() -> None:
    encoder, data = _encoder(), _dataset(10)
    features, labels = extract_features(encoder, data, batch_size=3)
    assert features.dtype == torch.float32 and labels.dtype == torch.int64
    assert features.shape == (10, 5)
    torch.testing.assert_close(features, _manual(encoder, data.tensors[0]), atol=1e-6, rtol=1e-5)
    assert labels.tolist() == [i % 3 for i in range(10)]
    torch.testing.assert_close(features.norm(dim=1), torch.ones(10))


def test_eval_mode_during_and_modes_restored_after() -> None:
    encoder = _encoder()
    encoder.train()
    encoder[2].eval()  # a submodule the caller keeps in eval mode on purpose
    before = [m.training for m in encoder.modules()]
    first, _ = extract_features(encoder, _dataset(6), batch_size=4)
    second, _ = extract_features(encoder, _dataset(6), batch_size=4)
    # Dropout(0.5) in train mode would make the two runs differ.
    torch.testing.assert_close(first, second, atol=0, rtol=0)
    assert [m.training for m in encoder.modules()] == before
    assert before[0] is True and before[3] is False


def test_modes_restored_when_the_encoder_fails() -> None:
    class Failing(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("boom")

    encoder = nn.Sequential(Failing())
    encoder.train()
    with pytest.raises(RuntimeError, match="boom"):
        extract_features(encoder, _dataset(2))
    assert all(m.training for m in encoder.modules())


def test_results_are_ordinary_tensors() -> None:
    features, labels = extract_features(_encoder(), _dataset(4))
    assert not features.is_inference() and not labels.is_inference()
    features.mul_(2.0)  # would raise on an inference tensor


def test_autocast_bfloat16_close_to_float32() -> None:
    encoder, data = _encoder(), _dataset(8)
    reference, _ = extract_features(encoder, data)
    low, _ = extract_features(encoder, data, autocast_dtype=torch.bfloat16)
    assert low.dtype == torch.float32
    torch.testing.assert_close(low.norm(dim=1), torch.ones(8))
    assert not torch.equal(low, reference)  # autocast really ran in bfloat16
    torch.testing.assert_close(low, reference, atol=3e-2, rtol=0)


class _PairList(Dataset):
    def __init__(self, n: int) -> None:
        self.images = _dataset(n).tensors[0]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], 7 - index  # python int labels


def test_python_int_labels() -> None:
    _, labels = extract_features(_encoder(), _PairList(5), batch_size=2)
    assert labels.tolist() == [7, 6, 5, 4, 3] and labels.dtype == torch.int64


def test_bad_inputs() -> None:
    encoder, data = _encoder(), _dataset(3)
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        extract_features(encoder, data, batch_size=0)
    with pytest.raises(ValueError, match="num_workers must be >= 0"):
        extract_features(encoder, data, num_workers=-1)
    with pytest.raises(ValueError, match="dataset is empty"):
        extract_features(encoder, _dataset(0))
    with pytest.raises(ValueError, match="autocast_dtype"):
        extract_features(encoder, data, autocast_dtype=torch.int8)
    with pytest.raises(ValueError, match=r"\[batch, D\] tensor, got \(3, 3, 4, 4\)"):
        extract_features(nn.Identity(), data)
    with pytest.raises(ValueError, match="pairs"):
        extract_features(encoder, TensorDataset(torch.randn(2, 3, 4, 4)))


# --- two processes over gloo -------------------------------------------------------------------


def _normed_encoder() -> nn.Module:
    torch.manual_seed(3)
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(48, 6), nn.BatchNorm1d(6))
    encoder[2].running_mean.uniform_(-1.0, 1.0)
    return encoder


class _RankFailing(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if dist.get_rank() == 1:
            raise ValueError("rank one broke")
        return x.flatten(1)


def _worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    try:
        encoder = _encoder()
        results = {}
        for n in (7, 1):  # odd N: unequal shards; N=1: rank 1 has an empty shard
            results[n] = extract_features(encoder, _dataset(n), batch_size=2)
        # Wrapped in DDP, with buffers, and one batch more on rank 0 than on rank 1.
        wrapped = nn.parallel.DistributedDataParallel(_normed_encoder())
        results["ddp"] = extract_features(wrapped, _dataset(7), batch_size=3)
        try:
            extract_features(_RankFailing(), _dataset(4))
            results["failure"] = "no error"
        except (ValueError, RuntimeError) as exc:
            results["failure"] = f"{type(exc).__name__}: {exc}"
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_process_gather_equals_single_process(tmp_path) -> None:
    world_size = 2
    context = mp.start_processes(
        _worker,
        args=(world_size, str(tmp_path / "init"), str(tmp_path)),
        nprocs=world_size,
        join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + 120
    while not context.join(timeout=5):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("distributed extraction hung")

    encoder = _encoder()
    for rank in range(world_size):
        results = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        for n in (7, 1):
            features, labels = results[n]
            expected, expected_labels = extract_features(encoder, _dataset(n), batch_size=2)
            assert features.shape == (n, 5)
            torch.testing.assert_close(features, expected, atol=1e-6, rtol=0)
            assert labels.tolist() == expected_labels.tolist() == [i % 3 for i in range(n)]
        features, labels = results["ddp"]
        expected, _ = extract_features(_normed_encoder(), _dataset(7), batch_size=3)
        assert labels.tolist() == [i % 3 for i in range(7)]
        torch.testing.assert_close(features, expected, atol=1e-6, rtol=0)
        # Neither rank hangs when one fails: the failing rank re-raises its own error.
        expected_error = (
            "ValueError: rank one broke"
            if rank == 1
            else "RuntimeError: feature extraction failed on another rank"
        )
        assert results["failure"] == expected_error
