"""Loaded by every Python process of a Ray node that qa starts (its folder leads PYTHONPATH there).

Ray's dashboard process asks the cloud metadata address (169.254.169.254, then
metadata.google.internal through DNS) which cloud it runs on, whether usage statistics
are on or off, and its TPU probe asks the same address on a machine with /dev/vfio.
Neither is needed to build or search; both would leave the machine. This file makes
those two functions answer "unknown" and "none" the moment their modules are imported,
and makes the usage report client send nothing. It imports nothing of Ray itself, so a
process that never imports those modules pays nothing.

Self-contained on purpose: it runs before ``qa`` could be imported (``qa.offline`` holds
the environment half of the same rule) and must not import ``qa`` (heavy) into Ray's own
processes.
"""

from __future__ import annotations

import importlib.abc
import sys

_PATCHES = {
    "ray._common.usage.usage_lib": "_patch_usage_lib",
    "ray._private.accelerators.tpu": "_patch_tpu",
}


def _patch_usage_lib(module) -> None:
    module.get_cloud_from_metadata_requests = lambda: "unknown"
    client = getattr(module, "UsageReportClient", None)
    if client is not None:
        client.report_usage_data = lambda self, url, data: None


def _patch_tpu(module) -> None:
    module._get_tpu_metadata = lambda key: None


def patch_loaded() -> None:
    """Patch the modules that are imported already (the driver imports Ray before it knows)."""
    for name, patch in _PATCHES.items():
        module = sys.modules.get(name)
        if module is not None:
            globals()[patch](module)


class _Loader(importlib.abc.Loader):
    def __init__(self, inner, patch):
        self.inner, self.patch = inner, patch

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module):
        self.inner.exec_module(module)
        globals()[self.patch](module)


class _Finder(importlib.abc.MetaPathFinder):
    """Wraps the loader of the modules in _PATCHES so that each is patched once executed."""

    def find_spec(self, name, path=None, target=None):
        patch = _PATCHES.get(name)
        if patch is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _Loader(spec.loader, patch)
                return spec
        return None


def install() -> None:
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
    patch_loaded()


install()
