"""Packaging beyond what pyproject.toml can say: the repository's ``configs/`` folder ships inside
the package as ``ldifs_lightning/configs/`` (``ldifs fit --config demo/ldifs`` after a
non-editable install; see ``ldifs_lightning/config_files.py``). Everything else is in
pyproject.toml.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["ldifs_lightning*"]), "ldifs_lightning.configs"],
    package_dir={"ldifs_lightning.configs": "configs"},
)
