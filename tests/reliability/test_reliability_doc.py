"""docs/reliability.md is generated from what this suite observed: it fails while the committed file is stale.

Runs last (see conftest.py). ``UPDATE_RELIABILITY_DOC=1`` rewrites the file instead of comparing.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest
from reliability_spec import REPORT, render

DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"


def test_reliability_doc_is_current():
    missing = REPORT.missing()
    if missing:
        pytest.skip(f"not every reliability test ran and passed in this session ({len(missing)} missing, e.g. "
                    f"{missing[0]}): nothing to compare")
    text = render(REPORT)
    if os.environ.get("UPDATE_RELIABILITY_DOC") == "1":
        DOC.parent.mkdir(exist_ok=True)
        DOC.write_text(text, encoding="utf-8")
        return
    current = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
    if current != text:
        diff = "".join(difflib.unified_diff(current.splitlines(True), text.splitlines(True),
                                            str(DOC), "generated", n=1))
        pytest.fail(f"{DOC} is stale: regenerate it with UPDATE_RELIABILITY_DOC=1 .venv/bin/python -m pytest -q "
                    f"tests/reliability\n{diff[:6000]}")
