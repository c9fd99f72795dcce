"""``python -m hub.config > docs/config.md``: write the configuration reference."""

import sys

from hub.config.reference import config_reference

sys.stdout.write(config_reference())
