"""The CycloneDX SBOM of a built baseline, written with cyclonedx-python-lib and checked against
the CycloneDX schema before it is published.

Every conda package is a component with its purl (`pkg:conda/NAME@VERSION?build=…&channel=…&
subdir=…&type=conda`) and sha256; every pip distribution with its purl (`pkg:pypi/…`) and the
sha256s its lock allows. `dependencies` lists what each component needs: conda packages by their
`depends`, pip distributions by their Requires-Dist, resolved to the components of this
environment (a pip requirement that conda provides points at the conda package).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from .errors import SbomError
from .orgchannel import std_renames
from .pypi import normalise

SCHEMA = "1.6"


def sbom_json(manifest: Mapping[str, Any]) -> str:
    """The SBOM of a build manifest as JSON text (a SbomError when it does not validate)."""
    from cyclonedx.model import HashAlgorithm, HashType
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.output import make_outputter
    from cyclonedx.schema import OutputFormat, SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator
    from packageurl import PackageURL

    name, version = manifest["name"], manifest["version"]
    bom = Bom()
    # The same build always gets the same serial number.
    bom.serial_number = uuid.uuid5(uuid.NAMESPACE_URL, f"baseliner:{name}@{version}:{manifest['lock_hash']}")
    root = Component(name=name, version=version, type=ComponentType.APPLICATION, bom_ref=f"{name}@{version}")
    bom.metadata.component = root
    conda: dict[str, Component] = {}
    for pkg in manifest["packages"]["conda"]:
        qualifiers = {
            "build": pkg["build"],
            "channel": pkg["channel"],
            "subdir": pkg["subdir"],
            "type": pkg["type"],
        }
        conda[pkg["name"]] = Component(
            name=pkg["name"],
            version=pkg["version"],
            type=ComponentType.LIBRARY,
            bom_ref=f"conda:{pkg['name']}",
            purl=PackageURL(type="conda", name=pkg["name"], version=pkg["version"], qualifiers=qualifiers),
            hashes=[HashType(alg=HashAlgorithm.SHA_256, content=pkg["sha256"])],
        )
    pip: dict[str, Component] = {}
    for pkg in manifest["packages"]["pip"]:
        pip[pkg["name"]] = Component(
            name=pkg["name"],
            version=pkg["version"],
            type=ComponentType.LIBRARY,
            bom_ref=f"pypi:{pkg['name']}",
            purl=PackageURL(type="pypi", name=pkg["name"], version=pkg["version"]),
            hashes=[HashType(alg=HashAlgorithm.SHA_256, content=h) for h in pkg["sha256"]],
        )
    for component in [*conda.values(), *pip.values()]:
        bom.components.add(component)
    bom.register_dependency(root, [*conda.values(), *pip.values()])
    for pkg in manifest["packages"]["conda"]:
        bom.register_dependency(conda[pkg["name"]], [conda[d] for d in pkg["depends"] if d in conda])
    # A pip requirement that conda provides: PyPI name -> conda name, through conda-forge's renames.
    reverse = {conda_name: pypi_name for pypi_name, conda_name in std_renames().items()}
    provided = {normalise(reverse.get(n, n)): n for n in conda}
    for pkg in manifest["packages"]["pip"]:
        needs = [pip.get(r) or conda.get(provided.get(r, r)) for r in pkg["requires"]]
        bom.register_dependency(pip[pkg["name"]], [c for c in needs if c is not None])
    schema = SchemaVersion.from_version(SCHEMA)
    text = str(make_outputter(bom, OutputFormat.JSON, schema).output_as_string(indent=2))
    problem = JsonStrictValidator(schema).validate_str(text)
    if problem is not None:
        raise SbomError(
            f"the SBOM of {name}@{version} is not valid CycloneDX {SCHEMA}", details=[str(problem)]
        )
    return text + "\n"
