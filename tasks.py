"""Tasks of this baselines repo: `invoke --list`. The logic lives in the baseliner package."""

from pathlib import Path

from baseliner.tasks import namespace

namespace.configure({"baseliner": {"root": str(Path(__file__).resolve().parent)}})
ns = namespace
