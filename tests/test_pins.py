"""The installed frameworks are the ones the suite was run on: pyproject.toml pins each to the
minor series CI tests, and this fails where an environment holds another (a cluster image
with its own Ray, a `pip install --no-deps`), whose behaviour nobody has checked."""
import re
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

tomllib = pytest.importorskip("tomllib")

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def requirements() -> list[Requirement]:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    return [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]]


def test_every_dependency_has_an_upper_bound():
    loose = [str(r) for r in requirements()
             if r.name != "packaging" and not any(s.operator in ("<", "==", "~=")
                                                  for s in r.specifier)]
    assert not loose, f"pin these to the series the suite ran on: {loose}"


@pytest.mark.parametrize("req", requirements(), ids=lambda r: r.name)
def test_the_installed_version_is_inside_its_pin(req):
    installed = metadata.version(req.name)
    # a local build tag (torch's "+cpu") is the same release
    release = re.split(r"[+]", installed)[0]
    assert req.specifier.contains(release, prereleases=True), (
        f"{req.name} {installed} is installed, outside the tested {req.specifier}; install "
        f"the tested series (pip install -e .) or run the whole suite on this one first")


def test_ray_is_pinned_to_one_minor_series():
    """sweeps.search and sweeps.scheduler subclass Ray classes: a new minor release may move
    what they override."""
    ray = next(r for r in requirements() if r.name == "ray")
    uppers = [s.version for s in ray.specifier if s.operator == "<"]
    lowers = [s.version for s in ray.specifier if s.operator == ">="]
    assert uppers and lowers and uppers[0].split(".")[:1] == lowers[0].split(".")[:1]
    assert int(uppers[0].split(".")[1]) - int(lowers[0].split(".")[1]) == 1, ray
