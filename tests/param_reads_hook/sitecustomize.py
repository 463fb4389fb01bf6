"""Imported by every Python process started with tests.param_reads.recording_env (the site
module imports `sitecustomize` from the path): a stage script records the params it reads."""

import os
import sys
from pathlib import Path

if os.environ.get("REID_TEST_PARAM_READS") and sys.argv[0].startswith("stages/"):
    from tests.param_reads import record_stage

    record_stage(Path(os.environ["REID_TEST_PARAM_READS"]))
