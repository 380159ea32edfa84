"""The conda env files stay complete: workflow/envs/pipeline.yaml (+ its post-deploy script) against
pyproject.toml's dependencies and against the third-party modules that pipeline/ imports; every env
file parses; the conda SLURM profile is the plain one plus conda."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
ENVS = ROOT / "workflow" / "envs"
PIPELINE_ENV = ENVS / "pipeline.yaml"
POST_DEPLOY = ENVS / "pipeline.post-deploy.sh"

# Import name → distribution name, where they differ (the default is the import name itself).
DISTRIBUTION_OF = {
    "cv2": "opencv-python-headless",
    "yaml": "pyyaml",
    "sklearn": "scikit-learn",
    "skimage": "scikit-image",
    "imageio_ffmpeg": "imageio-ffmpeg",
    "absl": "absl-py",
    "google": "protobuf",  # google.protobuf
    "PIL": "pillow",
}
# pyproject dependencies that serve the workflow engine on the submitting host, not the jobs' code.
ENGINE_ONLY = {"snakemake", "snakemake-executor-plugin-slurm"}


def env_requirements(path: Path) -> tuple[dict[str, str], dict[str, Requirement]]:
    """(conda packages name → spec, pip packages name → Requirement) of an env file."""
    env = yaml.safe_load(path.read_text())
    conda, pip = {}, {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            for line in dep.get("pip", []):
                req = Requirement(line)
                pip[canonicalize_name(req.name)] = req
        else:
            name, _, spec = dep.partition(" ") if " " in dep else (re.split(r"[=<>]", dep)[0], "", dep)
            conda[canonicalize_name(name)] = spec
    return conda, pip


def post_deploy_requirements() -> dict[str, Requirement]:
    """Packages the post-deploy script installs with --no-deps."""
    text = POST_DEPLOY.read_text()
    (args,) = re.findall(r"pip install --no-deps ([^\n]+)", text)
    return {canonicalize_name(Requirement(a).name): Requirement(a) for a in args.split()}


def makefile_no_deps() -> dict[str, Requirement]:
    text = (ROOT / "Makefile").read_text()
    (args,) = re.findall(r"pip install -q --no-deps ([^\n]+)", text)
    return {canonicalize_name(Requirement(a).name): Requirement(a) for a in args.split()}


def pipeline_env() -> dict[str, Requirement]:
    _, pip = env_requirements(PIPELINE_ENV)
    return {**pip, **post_deploy_requirements()}


def pinned_version(req: Requirement) -> str:
    (spec,) = req.specifier
    assert spec.operator == "==", f"{req}: pin it exactly (==)"
    return spec.version


def pyproject_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in [*project["dependencies"], *project["optional-dependencies"]["ml"]]]


def imported_modules() -> dict[str, set[str]]:
    """Third-party top-level modules imported by pipeline/ (plus importlib lookups by literal name)."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / "pipeline").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("find_spec", "import_module")
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                names = [node.args[0].value]
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "pipeline":
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


@pytest.mark.parametrize("path", sorted(ENVS.glob("*.yaml")), ids=lambda p: p.name)
def test_env_file_parses_with_a_pinned_python(path):
    env = yaml.safe_load(path.read_text())
    assert "nodefaults" in env["channels"]
    conda, pip = env_requirements(path)
    assert "python" in conda and re.search(r"\d", conda["python"]), f"{path.name}: pin python"
    if pip:
        assert "pip" in conda, f"{path.name}: a pip section needs pip from conda"


def test_pipeline_env_pins_are_exact_and_without_torchvision():
    env = pipeline_env()
    for req in env.values():
        pinned_version(req)
    assert "torchvision" not in env


def test_pipeline_env_has_every_pyproject_dependency_at_a_compatible_version():
    env = pipeline_env()
    missing, incompatible = [], []
    for req in pyproject_requirements():
        name = canonicalize_name(req.name)
        if name in ENGINE_ONLY:
            continue
        if name not in env:
            missing.append(str(req))
        elif req.specifier and not req.specifier.contains(pinned_version(env[name]), prereleases=True):
            incompatible.append(f"{req} (env pins {env[name]})")
    assert not missing, f"workflow/envs/pipeline.yaml lacks: {missing}"
    assert not incompatible, f"workflow/envs/pipeline.yaml pins outside pyproject: {incompatible}"


def test_pipeline_env_covers_every_module_pipeline_imports():
    env = pipeline_env()
    modules = imported_modules()
    assert {"numpy", "torch", "cv2", "mediapipe"} <= set(modules)  # the scan itself works
    missing = {
        module: sorted(paths)[:3]
        for module, paths in modules.items()
        if canonicalize_name(DISTRIBUTION_OF.get(module, module)) not in env
    }
    assert not missing, f"imported by pipeline/ but not in workflow/envs/pipeline.yaml: {missing}"


def test_no_deps_packages_match_the_makefile():
    """mediapipe and lpips: the env's post-deploy script installs what the Makefile installs --no-deps."""
    makefile = {name: str(req) for name, req in makefile_no_deps().items()}
    post_deploy = {name: str(req) for name, req in post_deploy_requirements().items()}
    assert makefile == post_deploy
    _, pip = env_requirements(PIPELINE_ENV)
    assert not set(post_deploy) & set(pip), "a --no-deps package must not also be in the pip list"


def test_conda_profile_is_the_slurm_profile_plus_conda():
    plain = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    conda = yaml.safe_load((ROOT / "profiles" / "slurm-conda" / "config.yaml").read_text())
    assert "software-deployment-method" not in plain  # works as shipped on a machine without conda
    assert conda.pop("software-deployment-method") == "conda"
    assert conda == plain
    assert plain["slurm-status-command"] == "squeue"
    assert "attempt" in str(plain["default-resources"]["mem_mb"])
