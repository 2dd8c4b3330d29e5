"""``python -m dsl_torchrec.train`` (what torchrun runs): same as ``dsl-train``."""

import sys

from ..cli import train_main

if __name__ == "__main__":
    sys.exit(train_main())
