import hashlib
import random

import pytest

from ldifs_lightning.data.splits import split_held_out, split_train_val


def test_split_does_not_depend_on_listing_order():
    ids = [f"class{i % 3}/img_{i:04d}.jpg" for i in range(200)]
    train, val = split_train_val(ids, val_fraction=0.1, seed=0)
    shuffled = ids[:]
    random.Random(1).shuffle(shuffled)
    _, val_s = split_train_val(shuffled, val_fraction=0.1, seed=0)
    assert sorted(ids[i] for i in val) == sorted(shuffled[i] for i in val_s)
    assert len(val) == 20 and len(train) == 180 and not set(train) & set(val)


def test_seed_changes_the_split_and_cap_applies():
    ids = [str(i) for i in range(100)]
    assert split_train_val(ids, 0.1, seed=0)[1] != split_train_val(ids, 0.1, seed=1)[1]
    assert len(split_train_val(ids, 0.5, seed=0, max_val=7)[1]) == 7


def test_duplicate_ids_rejected():
    with pytest.raises(ValueError, match="sample ids must be unique"):
        split_train_val(["a", "a"], 0.5)


def test_held_out_split_follows_its_seed():
    ids = [f"{c}/{i:03d}.jpg" for c in "abc" for i in range(30)]
    labels = [index // 30 for index in range(len(ids))]
    kept, held = split_held_out(ids, labels, fraction=0.2, seed=0)
    assert (kept, held) == split_held_out(ids, labels, fraction=0.2, seed=0)
    assert held != split_held_out(ids, labels, fraction=0.2, seed=1)[1]
    assert sorted(kept + held) == list(range(len(ids)))
    assert [sum(labels[index] == c for index in held) for c in range(3)] == [6, 6, 6]
    # The ranking is by sha256(f"{seed}:{id}") within each class, computed here independently.
    for c, letter in enumerate("abc"):
        members = [index for index in range(len(ids)) if labels[index] == c]
        lowest = sorted(members, key=lambda i: hashlib.sha256(f"7:{ids[i]}".encode()).digest())
        held_7 = split_held_out(ids, labels, fraction=0.2, seed=7)[1]
        assert sorted(lowest[:6]) == [index for index in held_7 if ids[index][0] == letter]
