"""``python -m virtual_android serve --port N``: the same as the ``virtual-android`` command."""

import sys

from .cli import main

sys.exit(main())
