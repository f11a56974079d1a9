"""Class names of the registered datasets, one module per dataset, each list in label order.

The names are the clean, human-readable ones of CLIP's zero-shot evaluations (``data/prompts.md``
in github.com/openai/CLIP; ImageNet's come from ``open_clip.zero_shot_metadata``), so that a
zero-shot head built from them matches the published CLIP numbers.
"""
