"""Disk counted honestly: by inode, across every scanned environment and package cache.

For each root: its apparent size (every file counted where it appears), its unique bytes (inodes no
other root links), and the bytes it shares with others (hardlinks). The total counts every inode
once, exactly as `du -sb` over the same directories does (files, directories and symlinks).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DiskUsage:
    root: str
    apparent: int
    unique: int
    shared: int


@dataclass(frozen=True)
class DiskReport:
    roots: tuple[DiskUsage, ...]
    total: int  # every inode once == du -sb over all roots

    def of(self, root: str) -> DiskUsage:
        return next(r for r in self.roots if r.root == root)


def measure(roots: Sequence[Path]) -> DiskReport:
    """Apparent and on-disk bytes of each root, hardlinks counted once: unique to a root or shared."""
    owners: dict[tuple[int, int], set[int]] = defaultdict(set)
    sizes: dict[tuple[int, int], int] = {}
    apparent = [0] * len(roots)
    for index, root in enumerate(roots):
        for dirpath, dirnames, filenames in os.walk(root):
            entries = [dirpath] if dirpath == str(root) else []
            entries += [os.path.join(dirpath, n) for n in filenames]
            entries += [os.path.join(dirpath, n) for n in dirnames]
            for path in entries:
                st = os.lstat(path)
                key = (st.st_dev, st.st_ino)
                if index not in owners[key]:
                    apparent[index] += st.st_size
                owners[key].add(index)
                sizes[key] = st.st_size
    unique = [0] * len(roots)
    shared = [0] * len(roots)
    for key, who in owners.items():
        for index in who:
            if len(who) == 1:
                unique[index] += sizes[key]
            else:
                shared[index] += sizes[key]
    usages = tuple(DiskUsage(str(r), apparent[i], unique[i], shared[i]) for i, r in enumerate(roots))
    return DiskReport(usages, sum(sizes.values()))
