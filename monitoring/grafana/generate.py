"""Write the Grafana dashboards (``dashboards/*.json``) from fm_auth_dashboards/ (Python).

    python monitoring/grafana/generate.py          # rewrite the JSON files
    python monitoring/grafana/generate.py --check  # exit 1 if a committed file differs

The JSON is committed so Grafana can provision it as is; the test suite checks it equals
what this script writes, so edit the Python, never the JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fm_auth_dashboards import build_dashboards
from fm_auth_dashboards.kit import JSON

DASHBOARDS_DIR = Path(__file__).resolve().parent / "dashboards"


def render(model: JSON) -> str:
    return json.dumps(model, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    stale = []
    for name, model in build_dashboards().items():
        path = DASHBOARDS_DIR / f"{name}.json"
        text = render(model)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            DASHBOARDS_DIR.mkdir(exist_ok=True)
            path.write_text(text)
    if stale:
        print(f"out of date (run generate.py): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
