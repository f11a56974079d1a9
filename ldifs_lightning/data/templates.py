"""Prompt templates for zero-shot heads, one set per dataset, each with one ``{}``.

Source: the template sets of CLIP's zero-shot evaluation, ``data/prompts.md`` in
github.com/openai/CLIP (Radford et al., 2021), which the LDIFS reference code also uses. SVHN is
not in prompts.md: its set is MNIST's, as in the LDIFS and task-vectors reference code. ImageNet's
80 templates come from ``open_clip.zero_shot_metadata.OPENAI_IMAGENET_TEMPLATES`` (CLIP's
``notebooks/Prompt_Engineering_for_ImageNet.ipynb``).
"""

from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

_GENERIC_PHOTO: tuple[str, ...] = (
    "a photo of a {}.",
    "a blurry photo of a {}.",
    "a black and white photo of a {}.",
    "a low contrast photo of a {}.",
    "a high contrast photo of a {}.",
    "a bad photo of a {}.",
    "a good photo of a {}.",
    "a photo of a small {}.",
    "a photo of a big {}.",
    "a photo of the {}.",
    "a blurry photo of the {}.",
    "a black and white photo of the {}.",
    "a low contrast photo of the {}.",
    "a high contrast photo of the {}.",
    "a bad photo of the {}.",
    "a good photo of the {}.",
    "a photo of the small {}.",
    "a photo of the big {}.",
)

CIFAR10_TEMPLATES = _GENERIC_PHOTO
CIFAR100_TEMPLATES = _GENERIC_PHOTO

STANFORD_CARS_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a photo of the {}.",
    "a photo of my {}.",
    "i love my {}!",
    "a photo of my dirty {}.",
    "a photo of my clean {}.",
    "a photo of my new {}.",
    "a photo of my old {}.",
)

DTD_TEMPLATES: tuple[str, ...] = (
    "a photo of a {} texture.",
    "a photo of a {} pattern.",
    "a photo of a {} thing.",
    "a photo of a {} object.",
    "a photo of the {} texture.",
    "a photo of the {} pattern.",
    "a photo of the {} thing.",
    "a photo of the {} object.",
)

EUROSAT_TEMPLATES: tuple[str, ...] = (
    "a centered satellite photo of {}.",
    "a centered satellite photo of a {}.",
    "a centered satellite photo of the {}.",
)

GTSRB_TEMPLATES: tuple[str, ...] = (
    'a zoomed in photo of a "{}" traffic sign.',
    'a centered photo of a "{}" traffic sign.',
    'a close up photo of a "{}" traffic sign.',
)

MNIST_TEMPLATES: tuple[str, ...] = ('a photo of the number: "{}".',)
SVHN_TEMPLATES = MNIST_TEMPLATES

RESISC45_TEMPLATES: tuple[str, ...] = (
    "satellite imagery of {}.",
    "aerial imagery of {}.",
    "satellite photo of {}.",
    "aerial photo of {}.",
    "satellite view of {}.",
    "aerial view of {}.",
    "satellite imagery of a {}.",
    "aerial imagery of a {}.",
    "satellite photo of a {}.",
    "aerial photo of a {}.",
    "satellite view of a {}.",
    "aerial view of a {}.",
    "satellite imagery of the {}.",
    "aerial imagery of the {}.",
    "satellite photo of the {}.",
    "aerial photo of the {}.",
    "satellite view of the {}.",
    "aerial view of the {}.",
)

STL10_TEMPLATES: tuple[str, ...] = ("a photo of a {}.", "a photo of the {}.")
SUN397_TEMPLATES: tuple[str, ...] = ("a photo of a {}.", "a photo of the {}.")

# open_clip stores them as functions of the class name; "{}" turns each back into its template.
IMAGENET_TEMPLATES: tuple[str, ...] = tuple(
    template("{}") for template in OPENAI_IMAGENET_TEMPLATES
)
