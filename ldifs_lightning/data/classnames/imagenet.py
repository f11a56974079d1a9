"""Class names of ImageNet-1k in label order (sorted WordNet ids), as open_clip ships them.

``open_clip.zero_shot_metadata.IMAGENET_CLASSNAMES`` is the list from CLIP's
``notebooks/Prompt_Engineering_for_ImageNet.ipynb``. It is kept as published, although it gives two
pairs of classes the same name ("missile", "sunglasses"), so that zero-shot numbers match CLIP's.
"""

from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES as _OPEN_CLIP_NAMES

IMAGENET_CLASSNAMES: tuple[str, ...] = tuple(_OPEN_CLIP_NAMES)
