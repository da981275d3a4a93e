"""What tests/test_distributed.py launches under torchrun: scripts/train_ddp.py's main, then this rank's weights.

Every rank writes the state dict it ended with to $DRAWAI_TEST_DUMP/rank<r>.safetensors, so the test can
check that the processes hold identical weights (the script itself saves rank 0's model only).
"""

import importlib.util
import os
import sys
from pathlib import Path

from safetensors.torch import save_file

from drawai.paths import SCRIPTS  # the test starts this file with PYTHONPATH at the checkout's root

spec = importlib.util.spec_from_file_location("train_ddp", SCRIPTS / "train_ddp.py")
train_ddp = importlib.util.module_from_spec(spec)
spec.loader.exec_module(train_ddp)

clf = train_ddp.main(sys.argv[1:])
dump = Path(os.environ["DRAWAI_TEST_DUMP"])
dump.mkdir(parents=True, exist_ok=True)
save_file({k: v.contiguous() for k, v in clf.model.state_dict().items()},
          str(dump / f"rank{os.environ.get('RANK', '0')}.safetensors"))
