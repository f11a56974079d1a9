"""Class names of STL-10 in label order (CLIP's prompts.md; equal to ``class_names.txt``)."""

STL10_CLASSNAMES: tuple[str, ...] = (
    "airplane",
    "bird",
    "car",
    "cat",
    "deer",
    "dog",
    "horse",
    "monkey",
    "ship",
    "truck",
)
