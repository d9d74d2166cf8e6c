"""The invoke tasks: thin, typed wrappers over the library, one module per area. The root
`tasks.py` and the `baseliner` console script both use `namespace` from here.

This is the one layer that prints and exits (see `_shell`).
"""

from __future__ import annotations

from invoke import Collection

from .audit import _propose_command, audit, clean, dedupe, export_env_task, propose
from .build import base_image, build_all, build_baseline_task, ci_matrix, publish, pull, unpack
from .cache import cache
from .overlays import build_overlay_task, drift, lock_overlay_task
from .reclaim import consolidate
from .specs import channel, lock, render, schema, seed_channel, validate

__all__ = ["_propose_command", "namespace"]

namespace = Collection(
    validate,
    seed_channel,
    channel,
    lock,
    render,
    base_image,
    build_baseline_task,
    build_all,
    unpack,
    publish,
    pull,
    ci_matrix,
    lock_overlay_task,
    build_overlay_task,
    drift,
    audit,
    propose,
    clean,
    dedupe,
    consolidate,
    export_env_task,
    schema,
)
namespace.add_collection(cache)
namespace.configure({"baseliner": {"root": None}})
