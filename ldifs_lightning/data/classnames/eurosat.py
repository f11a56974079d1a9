"""Class names of EuroSAT (RGB), in the label order of its sorted folder names.

The names are CLIP's (prompts.md). CLIP lists them in a different order, so they are mapped here
from EuroSAT's folder names, as the LDIFS and task-vectors reference code do.
"""

EUROSAT_FOLDER_TO_CLASSNAME: dict[str, str] = {
    "AnnualCrop": "annual crop land",
    "Forest": "forest",
    "HerbaceousVegetation": "brushland or shrubland",
    "Highway": "highway or road",
    "Industrial": "industrial buildings or commercial buildings",
    "Pasture": "pasture land",
    "PermanentCrop": "permanent crop land",
    "Residential": "residential buildings or homes or apartments",
    "River": "river",
    "SeaLake": "lake or sea",
}

EUROSAT_FOLDERS: tuple[str, ...] = tuple(sorted(EUROSAT_FOLDER_TO_CLASSNAME))
EUROSAT_CLASSNAMES: tuple[str, ...] = tuple(
    EUROSAT_FOLDER_TO_CLASSNAME[folder] for folder in EUROSAT_FOLDERS
)
