"""The fleet audit: every planted problem found, disk equal to du -sb, valid proposals, the corpus."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from datasketch import MinHash

from baseliner.audit import disk, similarity
from baseliner.audit.inventory import inventory, read_file
from baseliner.audit.propose import write
from baseliner.audit.report import AuditOptions, as_json, html, run_audit, scan, tokens
from baseliner.spec import BaselineRepo

from ..support.fleet import build_fleet
from ..support.synthetic import synthetic

# Real exports by other people, unchanged (SOURCES.tsv in each folder names where from): kept in
# the repo so the test runs in every checkout, never skipped.
CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpus"


@pytest.fixture
def fleet(tmp_path: Path):  # type: ignore[no-untyped-def]
    envs_root, cache = build_fleet(tmp_path / "server")
    envs = inventory(roots=[envs_root])
    audit = run_audit(envs, AuditOptions(threshold=0.75, quota=5, stale_days=90), caches=[cache])
    return envs_root, cache, audit


def _messages(audit, kind: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [f.message for f in audit.findings if f.kind == kind]


def test_every_planted_problem_is_found(fleet) -> None:  # type: ignore[no-untyped-def]
    _, _, audit = fleet
    assert _messages(audit, "pip-shadows-conda") == [
        "tool-shadow: pip numpy 2.0.1 shadows conda numpy 1.26.4"
    ]
    assert _messages(audit, "build-split") == ["cluster 0: numpy 1.26.4 has builds py311_mkl, py311_openblas"]
    assert _messages(audit, "channel-mix") == ["cluster 0: requests comes from conda-forge, pkgs/main"]
    assert _messages(audit, "naming") == ["'final_v2' does not match ^(proj|exp|tool)-[a-z0-9][a-z0-9-]*$"]
    assert [m.split(":")[0] for m in _messages(audit, "stale")] == ["exp-old"]
    assert (
        len(_messages(audit, "quota")) == 1 and "has 8 environments (quota 5)" in _messages(audit, "quota")[0]
    )


def test_clusters_group_the_near_duplicates(fleet) -> None:  # type: ignore[no-untyped-def]
    _, _, audit = fleet
    names = [[audit.envs[i].name for i in members] for members in audit.cluster_members()]
    assert sorted(names[0]) == ["exp-mkl", "exp-old", "final_v2", "proj-alpha", "proj-beta", "proj-gamma"]
    assert all("tool-r" not in group for group in names)


def test_disk_total_equals_du(fleet) -> None:  # type: ignore[no-untyped-def]
    envs_root, cache, audit = fleet
    roots = sorted(str(p) for p in envs_root.iterdir())
    du = subprocess.run(["du", "-sb", *roots, str(cache)], capture_output=True, text=True, check=True).stdout
    assert audit.disk.total == sum(int(line.split()[0]) for line in du.splitlines())
    alpha = audit.disk.of(str(envs_root / "proj-alpha"))
    assert alpha.shared > alpha.unique  # its package files are hardlinks into the cache


def test_proposal_is_a_valid_spec_and_counts_bytes(fleet, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, _, audit = fleet
    proposal = audit.proposals[0]
    assert "numpy ==1.26.4 py311_openblas" in proposal.baseline["conda"]  # majority build
    assert proposal.overlays["exp-old"]["conda"] == ["tqdm ==4.66.1 pyhd8ed1ab_0"]
    assert any("exp-mkl: numpy 1.26.4 py311_mkl" in c for c in proposal.conflicts)
    assert 0 < proposal.projected_bytes < proposal.current_bytes and proposal.freed_bytes > 0
    written = write(proposal, tmp_path / "proposal", "invoke propose --cluster 0 --root envs")
    repo = BaselineRepo(tmp_path / "proposal" / "baselines")
    assert repo.resolve(proposal.baseline["name"]).conda_specs == proposal.baseline["conda"]
    assert len(written) == 1 + len(proposal.members)


def test_reports(fleet) -> None:  # type: ignore[no-untyped-def]
    _, _, audit = fleet
    data = as_json(audit)
    assert data["schema_version"] == 1 and len(data["environments"]) == 8
    # The matrix product against plain Python sets: every cluster's weakest pair, exactly.
    by_name = {e.name: {f"{p.source}:{p.name}=={p.version}" for p in e.packages} for e in audit.envs}
    for cluster in data["clusters"]:
        sets = [by_name[m] for m in cluster["members"]]
        pairs = [len(a & b) / len(a | b) for i, a in enumerate(sets) for b in sets[i + 1 :]]
        linked = [s for s in pairs if s >= 0.75]  # the fleet's threshold: pairs that are edges
        assert cluster["min_similarity"] == round(min(linked), 4)
    page = html(audit)
    assert (
        page.count("<rect ") == len(audit.envs) ** 2
        and "Findings" in page
        and "http" not in page.split("<body>")[1]
    )


def test_corpus_is_read_without_a_crash_and_findings_hold() -> None:
    files = sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.name not in ("README.md", "SOURCES.tsv"))
    envs = [read_file(f) for f in files]
    assert len(envs) == len(files) >= 60 and all(e.packages for e in envs)
    by_file = {Path(e.location).name: e for e in envs}
    # Hand-checked: this export has conda pytorch and pip torch; keras twice in pip is counted once.
    audit = run_audit(envs, AuditOptions(threshold=0.9))
    shadow = [f.message for f in audit.findings if f.kind == "pip-shadows-conda"]
    assert shadow, "the corpus holds pip packages shadowing conda ones"
    twins = by_file["aayush9753__Age_and_Gender_Detection_through_CCTV_Videos__environment_windows.yml"]
    other = by_file["Umang1815__Age_and_Gender_Detection_through_CCTV_Videos__environment_windows.yml"]
    groups = [{audit.envs[i].location for i in members} for members in audit.cluster_members()]
    assert any({twins.location, other.location} <= g for g in groups)  # a course template copied


def test_proposal_locked_against_the_channel_reproduces_each_member(make_project, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from baseliner.lock import LockPaths, lock_baseline, read_lock_records
    from baseliner.overlay import load_overlay, lock_overlay, resolve_base

    from ..conftest import install_baseline, spec

    project = make_project(
        {
            "a": spec("a", conda=["python 3.*", "hello-noarch", "libfoo 1.*"]),
            "b": spec("b", conda=["python 3.*", "hello-noarch", "libfoo 1.*", "prefixdemo"]),
        }
    )
    prefixes = [install_baseline(project, "a"), install_baseline(project, "b")]
    envs = inventory(prefixes=prefixes)
    audit = run_audit(envs, AuditOptions(threshold=0.5))
    (proposal,) = audit.proposals
    out = tmp_path / "proposal"
    write(proposal, out, "invoke propose --cluster 0 --root envs")
    (out / "baseliner.yaml").write_text((project.root / "baseliner.yaml").read_text())
    from baseliner.config import Project

    proposed = Project.load(out)
    baseline = proposed.repo().resolve(proposal.baseline["name"])
    lock_baseline(baseline, proposed.mirrors(), proposed.build_dir)
    _, base_records = read_lock_records(LockPaths(baseline.path).lock, "linux-64")
    base_set = {(str(r.name.normalized), str(r.version), str(r.build)) for r in base_records}
    for env in envs:
        overlay_path = out / "overlays" / env.name / "overlay.yaml"
        overlay_path.write_text(
            overlay_path.read_text().replace(
                f"extends: {proposal.baseline['name']}@proposed",
                f"extends: ../../baselines/{proposal.baseline['name']}.lock",
            )
        )
        overlay = load_overlay(overlay_path)
        base = resolve_base(overlay, None, tmp_path / "bases")
        locked = lock_overlay(overlay, base, proposed.mirrors(), proposed.build_dir)
        delta = {(str(r.name.normalized), str(r.version), str(r.build)) for r in locked.records["linux-64"]}
        assert base_set | delta == {(p.name, p.version, p.build) for p in env.conda}, env.name


def test_minhash_signatures_are_datasketchs() -> None:
    """The vectorised signatures equal datasketch's own MinHash.update_batch, row by row."""
    sets = [["conda:a==1", "conda:b==2", "pip:c==3"], ["conda:b==2"], [], ["pip:c==3", "conda:a==1"] * 2]
    tokens = similarity.token_matrix(sets)
    sig = similarity.signatures(tokens)
    for row, members in enumerate(sets):
        reference = MinHash(num_perm=similarity.NUM_PERM, seed=similarity.SEED)
        reference.update_batch([t.encode() for t in members])
        assert sig[:, row].tolist() == reference.hashvalues.tolist()


@pytest.mark.parametrize("exact_limit", [similarity.EXACT_LIMIT, 40], ids=["groups-exact", "buckets"])
def test_scalable_clusters_equal_the_exact_ones_at_10k(
    exact_limit: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    envs = synthetic(10_000)
    exact = similarity.cluster_exact(envs, 0.9)
    monkeypatch.setattr(similarity, "EXACT_LIMIT", exact_limit)  # 40: every group goes bucket by bucket
    scalable = similarity.cluster_lsh(envs, 0.9)
    assert scalable.method == "minhash-lsh" and len(exact.members()) == 60
    assert scalable.members() == exact.members()
    # Plain Python sets agree on a sample of pairs: linked ones share a cluster.
    sets = [set(e) for e in envs[:300]]
    for i in range(0, 300, 7):
        for j in range(i + 1, 300):
            jaccard = len(sets[i] & sets[j]) / len(sets[i] | sets[j])
            if jaccard >= 0.9:
                assert exact.labels[i] == exact.labels[j]


def test_lsh_finds_the_fleets_clusters(fleet) -> None:  # type: ignore[no-untyped-def]
    _, _, audit = fleet
    sets = [tokens(e) for e in audit.envs]
    assert similarity.cluster_lsh(sets, 0.75).members() == similarity.cluster_exact(sets, 0.75).members()
    assert audit.cluster_members()


def test_scan_is_inventory_and_disk_side_by_side(tmp_path: Path) -> None:
    envs_root, cache = build_fleet(tmp_path / "server")
    envs, usage = scan([envs_root], caches=[cache])
    alone = inventory(roots=[envs_root])
    assert [e.location for e in envs] == [e.location for e in alone]
    assert usage == disk.measure([*(Path(e.location) for e in alone if e.kind == "prefix"), cache])
    du = subprocess.run(
        ["du", "-sbc", *(e.location for e in envs), str(cache)], capture_output=True, text=True
    )
    assert usage.total == int(du.stdout.splitlines()[-1].split()[0])


@pytest.mark.parametrize(
    ("name", "text", "unreadable"),
    [
        (
            "tagged.yml",
            "name: t\ndependencies:\n  - !!int numpy\n",
            ["tagged.yml:3: not YAML (the value 'numpy' is not a valid !!int)"],
        ),
        (
            "self.yml",
            "dependencies: &a [*a]\n",
            ["self.yml:1: not YAML (an alias refers to a value that contains it)"],
        ),
        (
            "keys.yml",
            "? [1]\n: 2\n",
            ["keys.yml:1: not YAML (a key must be a plain value, not a list or a mapping)"],
        ),
        ("list.yml", "- numpy\n", ["list.yml:1: not a mapping"]),
        (
            "lock.yml",
            "package:\n  - !!float x\nmanager: conda\n",
            ["lock.yml:2: not YAML (the value 'x' is not a valid !!float)"],
        ),
        ("odd-lock.yml", "package: 5\nmanager: conda\nmetadata: [1]\n", []),
    ],
)
def test_an_export_pyyaml_cannot_construct_is_listed_as_unreadable(
    tmp_path: Path, name: str, text: str, unreadable: list[str]
) -> None:
    # An audit reads other people's files: one odd file is a line in the report, not a traceback.
    path = tmp_path / name
    path.write_text(text)
    profile = read_file(path)
    assert [line.removeprefix(f"{tmp_path}/") for line in profile.unreadable] == unreadable
    assert profile.packages == []
