"""The wheels ser needs on a GPU machine that reaches no package index and whose Python already
holds torch (a lent machine's image, a cluster's PyTorch module): ``benchmarks/gpu_suite.sh``
installs them there from ``.whl/`` next to, not over, what that Python has.

Walks ser's requirements (runtime, ``bench`` and pytest for the GPU tests) at the versions
``requirements.lock`` pins for the target's Python, skipping the torch stack (torch, torchaudio,
triton, nvidia-*, cuda-*: the target's own is used, whatever its version) and every package the
target already has at a version that meets every requirement on it. A package the target has
at a version not written in ``--target-has`` is relied on when its wheel is large; a smaller one
(<= ``--hedge-mib``) travels too, so pip there can take it if the target's own proves too old.
Writes the chosen wheels and ``requirements.txt`` (what the suite asks pip for) to ``--dest``:

    .venv/bin/python benchmarks/gpu_wheels.py [--python 3.12] \
        [--target-has benchmarks/gpu_image.txt] [--dest .whl]

``--target-has`` lists the target's packages as ``pip list --format=freeze`` writes them (bare
names where versions are unknown). Each chosen package is printed with why it travels.
"""

from __future__ import annotations

import argparse
import email.parser
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

ROOT = Path(__file__).resolve().parent.parent
TORCH_STACK = re.compile(r"^(torch|torchaudio|triton|nvidia-.*|cuda-.*)$")
PLATFORMS = ["manylinux1_x86_64", "manylinux2014_x86_64"] + [
    f"manylinux_2_{minor}_x86_64" for minor in range(17, 40)
]
LOCK_LINE = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)\s*(?:;\s*(.*?))?\s*\\?$")


def marker_environment(python: str) -> dict[str, str]:
    """Marker values of CPython ``python`` (major.minor) on x86-64 Linux."""
    return {
        "python_version": python,
        "python_full_version": f"{python}.0",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "extra": "",
    }


def lock_pins(lock: Path, environment: dict[str, str]) -> dict[str, str]:
    """name -> version of every lock entry whose marker holds in ``environment``."""
    pins = {}
    for line in lock.read_text().splitlines():
        match = LOCK_LINE.match(line)
        if match and (not match[3] or Marker(match[3]).evaluate(environment)):
            pins[canonicalize_name(match[1])] = match[2]
    return pins


def target_packages(path: Path | None) -> dict[str, Version | None]:
    """name -> version (None where unknown) of ``pip list --format=freeze`` lines or bare names."""
    if path is None:
        return {}
    if not path.is_file():
        raise SystemExit(f"--target-has {path}: no such file (pip list --format=freeze writes one)")
    packages = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if line:  # NAME==VERSION, NAME, or NAME @ URL (pip's freeze of a direct install)
            name, _, version = line.split(" @ ", 1)[0].partition("==")
            try:
                packages[canonicalize_name(name)] = Version(version) if version else None
            except InvalidVersion:
                raise SystemExit(f"{path}:{number}: {line!r}: not NAME==VERSION") from None
    return packages


def root_requirements(pyproject: Path) -> list[Requirement]:
    """ser's runtime and ``bench`` requirements and pytest (the suite's GPU tests)."""
    project = tomllib.loads(pyproject.read_text())["project"]
    extras = project["optional-dependencies"]
    pytest = [r for r in extras["dev"] if canonicalize_name(Requirement(r).name) == "pytest"]
    return [Requirement(r) for r in project["dependencies"] + extras["bench"] + pytest]


def wheel_requirements(wheel: Path, extras: set[str], environment: dict) -> list[Requirement]:
    """The Requires-Dist of ``wheel`` that apply on the target with ``extras`` asked for."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = email.parser.Parser().parsestr(archive.read(name).decode())
    requirements = []
    for line in metadata.get_all("Requires-Dist") or []:
        requirement = Requirement(line)
        marker = requirement.marker
        if marker is None or any(
            marker.evaluate({**environment, "extra": extra}) for extra in extras | {""}
        ):
            requirements.append(requirement)
    return requirements


def download(specs: dict[str, str], python: str, into: Path) -> dict[str, Path]:
    """The wheel of each name == version for CPython ``python`` on x86-64 Linux, fetched by pip."""
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
    command += ["--only-binary=:all:", "--implementation", "cp", "--python-version", python]
    wanted = [f"{name}=={version}" for name, version in specs.items()]
    if subprocess.run([*command, *platforms, "--dest", str(into), *wanted]).returncode:
        raise SystemExit(f"pip could not download {' '.join(wanted)} for CPython {python} (above)")
    wheels = {}
    for wheel in into.glob("*.whl"):
        name, version = wheel.name.split("-")[:2]
        if specs.get(canonicalize_name(name)) == version:
            wheels[canonicalize_name(name)] = wheel
    return wheels


def choose(
    roots: list[Requirement],
    pins: dict[str, str],
    target: dict[str, Version | None],
    fetch,
    environment: dict[str, str],
    hedge_bytes: int,
) -> tuple[dict[str, str], dict[str, str]]:
    """(name -> why it travels, name -> why the target's own is used) over ``roots``' closure.

    ``fetch({name: version})`` returns each wheel's path. A package travels when the target lacks
    it, or its version there misses a requirement on it, or the target's version of a package it
    is a requirement of excludes the version that travels (tokenizers 0.23.2 pins
    huggingface-hub < 2 when transformers 5.25 needs >= 2.4: both travel); with an unknown version
    there it travels only if its wheel is at most ``hedge_bytes``. The requirements of what travels
    are walked in turn; a requirement the target meets ends the walk there.
    """
    forced: dict[str, str] = {}
    while True:
        carried, relied, needs = walk(roots, pins, target, fetch, environment, hedge_bytes, forced)
        clashes = {  # the target's version of a package excludes what travels: it travels too
            owner: f"{pins[owner]}: the target's {target[owner]} needs {req}, not {pins[dep]}"
            for owner, req in needs
            for dep in [canonicalize_name(req.name)]
            if owner not in carried
            and dep in carried
            and not req.specifier.contains(Version(pins[dep]), True)
        }
        if not clashes:
            return carried, relied
        forced.update(clashes)


def walk(roots, pins, target, fetch, environment, hedge_bytes, forced):
    """One pass of ``choose``, carrying ``forced`` too: (carried, relied, the requirements of the
    target's own packages as (package, requirement))."""
    specifiers: dict[str, list[Requirement]] = {}
    extras: dict[str, set[str]] = {}
    walked: dict[str, set[str]] = {}  # per name: the extras and version read
    carried: dict[str, str] = {}
    relied: dict[str, str] = {}
    needs: list[tuple[str, Requirement]] = []
    pending = list(roots)
    while pending:
        level, pending, touched = pending, [], []
        for requirement in level:
            name = canonicalize_name(requirement.name)
            if TORCH_STACK.match(name):
                relied[name] = "the target's torch stack"
                continue
            if name not in pins:
                raise SystemExit(f"{name} is needed but requirements.lock pins no version of it")
            specifiers.setdefault(name, []).append(requirement)
            extras.setdefault(name, set()).update(requirement.extras)
            touched += [] if name in touched else [name]
        for name in touched:
            have = target.get(name, "missing")
            if name in carried or (name in relied and have is None):
                pass
            elif name in forced:
                carried[name] = forced[name]
            elif have == "missing":
                carried[name] = f"{pins[name]}: the target lacks it"
            elif have is None:
                size = fetch({name: pins[name]})[name].stat().st_size
                if size > hedge_bytes:
                    relied[name] = f"the target's, version unknown (wheel {size >> 10} KiB)"
                else:
                    carried[name] = (
                        f"{pins[name]}: in case the target's (version unknown) is too old"
                    )
            else:
                missed = [str(r) for r in specifiers[name] if not r.specifier.contains(have, True)]
                if missed:
                    relied.pop(name, None)
                    carried[name] = f"{pins[name]}: the target's {have} misses {', '.join(missed)}"
                else:
                    relied[name] = f"the target's {have}"
        versions = {n: pins[n] if n in carried else str(target[n]) for n in touched}
        wheels = fetch({n: v for n, v in versions.items() if n in carried or target.get(n)})
        for name in touched:
            if name in wheels and walked.get(name) != extras[name] | {versions[name]}:
                walked[name] = extras[name] | {versions[name]}
                requirements = wheel_requirements(wheels[name], extras[name], environment)
                if name in carried:
                    pending += requirements
                else:  # the target has what these need; they only constrain what travels
                    needs += [(name, requirement) for requirement in requirements]
    for name in carried:
        pin = Version(pins[name])
        missed = [str(r) for r in specifiers[name] if not r.specifier.contains(pin, True)]
        if missed:
            raise SystemExit(f"the lock's {name}=={pin} misses a requirement: {missed}")
    return carried, relied, needs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default="3.12", help="the target's CPython, major.minor")
    parser.add_argument(
        "--target-has", type=Path, default=Path(__file__).with_name("gpu_image.txt")
    )
    parser.add_argument("--dest", type=Path, default=ROOT / ".whl")
    parser.add_argument("--hedge-mib", type=float, default=5.0)
    parser.add_argument("--lock", type=Path, default=ROOT / "requirements.lock")
    args = parser.parse_args(argv)
    environment = marker_environment(args.python)
    pins = lock_pins(args.lock, environment)
    roots = root_requirements(ROOT / "pyproject.toml")
    with tempfile.TemporaryDirectory() as cache:
        fetched: dict[tuple[str, str], Path] = {}

        def fetch(specs: dict[str, str]) -> dict[str, Path]:
            missing = {n: v for n, v in specs.items() if (n, v) not in fetched}
            if missing:
                folder = Path(tempfile.mkdtemp(dir=cache))  # a version per folder
                fetched.update(
                    {(n, missing[n]): w for n, w in download(missing, args.python, folder).items()}
                )
            return {n: fetched[n, v] for n, v in specs.items()}

        carried, relied = choose(
            roots,
            pins,
            target_packages(args.target_has),
            fetch,
            environment,
            int(args.hedge_mib * 2**20),
        )
        shutil.rmtree(args.dest, ignore_errors=True)
        args.dest.mkdir(parents=True)
        for name in sorted(carried):
            shutil.copy2(fetch({name: pins[name]})[name], args.dest)
    wanted = [r for r in roots if not TORCH_STACK.match(canonicalize_name(r.name))]
    (args.dest / "requirements.txt").write_text("".join(f"{r}\n" for r in wanted))
    total = sum(w.stat().st_size for w in args.dest.glob("*.whl"))
    for name in sorted(carried):
        print(f"carried  {name}=={carried[name]}")
    for name in sorted(n for n, why in relied.items() if n not in carried):
        print(f"relied   {name}: {relied[name]}")
    print(f"{len(carried)} wheels, {total / 2**20:.1f} MiB in {args.dest} (CPython {args.python})")


if __name__ == "__main__":
    main()
