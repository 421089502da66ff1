"""python -m ash_ray -> the ash-ray CLI."""

import sys

from ash_ray.cli import main

sys.exit(main())
