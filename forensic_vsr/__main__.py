from __future__ import annotations

import sys

from forensic_vsr.cli import main

sys.exit(main())
