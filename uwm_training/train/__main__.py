"""``python -m uwm_training.train``: the module torchrun launches (``-m uwm_training.train``)."""

import sys

from .cli import main

sys.exit(main())
