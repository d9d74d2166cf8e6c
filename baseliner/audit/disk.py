"""Disk counted honestly: by inode, across every scanned environment and package cache.

For each root: its apparent size (every file counted where it appears), its unique bytes (inodes no
other root links), and the bytes it shares with others (hardlinks). The total counts every inode
once, exactly as `du -sb` over the same directories does (files, directories and symlinks).
"""

from __future__ import annotations

import os
import stat
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
    """Apparent and on-disk bytes of each root, hardlinks counted once: unique to a root or shared.

    One `lstat` per entry (`os.scandir`'s own). A file with a single link can only be met once, so
    it is counted on the spot; only multiply-linked inodes are remembered, each with the bit mask of
    the roots that hold it."""
    holders: dict[tuple[int, int], int] = {}
    sizes: dict[tuple[int, int], int] = {}
    apparent = [0] * len(roots)
    unique = [0] * len(roots)
    for index, root in enumerate(roots):
        bit = 1 << index
        top = os.lstat(root)
        alone = top.st_size  # this root's bytes in inodes only it can hold (single links, dirs)
        linked = 0  # its bytes in multiply-linked inodes, each counted once here
        stack = [str(root)] if stat.S_ISDIR(top.st_mode) else []
        while stack:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    st = entry.stat(follow_symlinks=False)
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                        alone += st.st_size
                    elif st.st_nlink == 1:
                        alone += st.st_size
                    else:
                        key = (st.st_dev, st.st_ino)
                        mask = holders.get(key, 0)
                        if not mask & bit:
                            holders[key] = mask | bit
                            sizes[key] = st.st_size
                            linked += st.st_size
        apparent[index] = alone + linked
        unique[index] = alone
    total = sum(unique) + sum(sizes.values())
    shared = [0] * len(roots)
    for key, mask in holders.items():
        if mask & (mask - 1) == 0:
            unique[mask.bit_length() - 1] += sizes[key]
            continue
        while mask:
            low = mask & -mask
            shared[low.bit_length() - 1] += sizes[key]
            mask ^= low
    usages = tuple(DiskUsage(str(r), apparent[i], unique[i], shared[i]) for i, r in enumerate(roots))
    return DiskReport(usages, total)
