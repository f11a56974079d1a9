"""Class names of the digit datasets (MNIST, SVHN): label ``i`` is the digit ``i``.

CLIP's prompts.md uses ``'0'`` ... ``'9'`` for MNIST; SVHN is not in prompts.md and uses the same
names in the LDIFS and task-vectors reference code. torchvision maps SVHN's label 10 to digit 0.
"""

DIGIT_CLASSNAMES: tuple[str, ...] = tuple(str(digit) for digit in range(10))
