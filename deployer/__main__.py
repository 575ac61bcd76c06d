"""python -m deployer [OPTIONS]: what ./deploy.sh runs (see ./deploy.sh --help)."""

import sys

from deployer.cli import main

sys.exit(main())
