"""The README states the Python it needs, as pyproject does, and lists each document once."""

from __future__ import annotations

import re
import tomllib
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_states_the_python_pyproject_requires() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    floor = re.fullmatch(r">=\s*(\d+\.\d+)", pyproject["project"]["requires-python"])
    assert floor, pyproject["project"]["requires-python"]
    assert f"Python {floor[1]} or newer is required" in " ".join(README.split())


def test_documents_lists_every_doc_once() -> None:
    section = README.split("\n## Documents\n", 1)[1].split("\n## ", 1)[0]
    links = Counter(re.findall(r"^\* \[[^\]]+\]\(([^)]+)\)", section, flags=re.M))
    assert all(n == 1 for n in links.values()), links
    docs = {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")}
    assert set(links) == docs
