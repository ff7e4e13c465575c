"""Nothing leaves the machine: every library's telemetry and model-hub access turned off, in code.

``import qa`` calls ``stay_offline()`` before any of these libraries is imported, so no
entry point (``ui.py``, ``python -m qa``, the Python API) depends on the user's environment:

- OpenVINO: ``import openvino`` sends a Google Analytics event through
  ``openvino_telemetry``, which takes a missing consent file for consent. With that
  module blocked, OpenVINO falls back to its own no-op stub (``openvino.tools.ovc.telemetry_stub``).
- Gradio (analytics, version check), huggingface_hub and transformers (telemetry, hub
  downloads): their own switches, set whatever the environment said.
- Ray (``qa.ray_engine``, ``qa.shards``): usage statistics off (``RAY_USAGE_STATS_ENABLED=0``),
  and its report address pointed at a closed loopback port, since a cluster started with
  ``ray start`` still sends a "usage disabled" report there. Ray's own processes also ask the
  cloud metadata address (169.254.169.254) which cloud they run on, usage statistics or
  not; ``qa/ray_site/sitecustomize.py`` stops that in each of them (``qa.ray_engine``).
"""

from __future__ import annotations

import logging
import os
import sys

logger = logging.getLogger(__name__)

# Set, not defaulted: a user's GRADIO_ANALYTICS_ENABLED=True or HF_HUB_OFFLINE=0 must not turn them back on.
OFFLINE_ENV = {
    "GRADIO_ANALYTICS_ENABLED": "False",
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "DO_NOT_TRACK": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_USAGE_STATS_PROMPT_ENABLED": "0",
    # port 9 (discard) on loopback: nothing listens, so even a report Ray sends anyway stays here
    "RAY_USAGE_STATS_REPORT_URL": "http://127.0.0.1:9/",
}
# Modules whose only job is to send usage data; importing one fails with ImportError.
BLOCKED_MODULES = ("openvino_telemetry",)


class _NoTelemetry:
    """Stands in for openvino_telemetry.Telemetry when that was imported before qa."""

    def __init__(self, *args, **kwargs):
        pass

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def stay_offline() -> None:
    """Turn off every telemetry and hub access this project's libraries have (idempotent)."""
    os.environ.update(OFFLINE_ENV)
    for name in BLOCKED_MODULES:
        module = sys.modules.get(name)
        if module is None:
            sys.modules[name] = None  # the import system raises ImportError for a None entry
        else:
            logger.warning("%s was imported before qa; its events are dropped from now on", name)
            module.Telemetry = _NoTelemetry
    # Read once, when huggingface_hub is imported: fix them if that has happened already.
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = True
        constants.HF_HUB_DISABLE_TELEMETRY = True
