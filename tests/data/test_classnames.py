"""Class names and templates of the registered datasets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ldifs_lightning.data import get_dataset_info, list_datasets
from ldifs_lightning.data.classnames.sun397 import SUN397_CLASSNAMES, SUN397_FOLDERS

COUNTS = {
    "cars": 196,
    "cifar10": 10,
    "cifar100": 100,
    "dtd": 47,
    "eurosat": 10,
    "gtsrb": 43,
    "imagenet": 1000,
    "mnist": 10,
    "resisc45": 45,
    "stl10": 10,
    "sun397": 397,
    "svhn": 10,
}


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_class_names_are_unique_clean_and_counted(name):
    info = get_dataset_info(name)
    # CLIP's ImageNet list names two pairs of classes alike (missile, sunglasses), as published.
    repeats = 2 if name == "imagenet" else 0
    assert len(info.classnames) == len(set(info.classnames)) + repeats == COUNTS[name]
    assert not any(
        "_" in classname or classname != classname.strip() for classname in info.classnames
    )
    assert info.split_source and info.description


@pytest.mark.parametrize("name", list_datasets())
def test_every_template_has_one_slot(name):
    templates = get_dataset_info(name).templates
    assert templates and all(template.count("{}") == 1 for template in templates)


def test_label_order_spot_checks():
    def names(name: str) -> tuple[str, ...]:
        return get_dataset_info(name).classnames

    assert names("eurosat")[2] == "brushland or shrubland"  # folder HerbaceousVegetation
    assert names("eurosat")[-1] == "lake or sea"  # folder SeaLake
    assert names("cars")[0] == "AM General Hummer SUV 2000"
    assert names("cars")[-1] == "smart fortwo Convertible 2012"
    assert names("gtsrb")[14] == "stop"
    assert names("imagenet")[:2] == ("tench", "goldfish")
    assert names("svhn")[0] == "0" and names("mnist")[9] == "9"
    assert names("resisc45")[-1] == "wetland"


def test_sun397_names_follow_the_class_file_not_clip_alphabetical_order():
    # ClassName.txt sorts "/j/jail/indoor" before "/j/jail_cell"; CLIP's list is sorted by name.
    jail = SUN397_FOLDERS.index("j/jail/indoor")
    assert SUN397_FOLDERS[jail + 1] == "j/jail_cell"
    assert SUN397_CLASSNAMES[jail : jail + 2] == ("jail indoor", "jail cell")
    assert SUN397_CLASSNAMES[SUN397_FOLDERS.index("t/theater/indoor_procenium")] == (
        "theater indoor procenium"
    )


def test_readme_table_matches_the_registry():
    docs = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    rows = re.findall(r"^\| `([a-z0-9]+)` \| [^|]+ \| ([\d,]+) \|", docs, flags=re.MULTILINE)
    documented = {name: int(count.replace(",", "")) for name, count in rows}
    assert documented == {**COUNTS, "shapes": 8}
