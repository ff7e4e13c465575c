"""Ray, offline: start a local Ray or join a cluster with nothing leaving the machine.

Everything qa runs on Ray goes through ``start_ray``:

- the environment of Ray's processes (``ray_environment``): usage statistics off
  (``qa.offline``), ``qa/ray_site`` first on PYTHONPATH so that each of Ray's Python
  processes stops its cloud-metadata probes (see ``qa/ray_site/sitecustomize.py``), the
  repository next so that workers import ``qa``; and, for a local Ray, every address on
  loopback (Ray otherwise finds "its" address by a UDP connect towards 8.8.8.8);
- no dashboard, and workers' output kept in Ray's log files instead of the driver's terminal;
- for a cluster, token authentication on whenever a token is at hand: ``ray start
  --head`` turns it on by itself when ``~/.ray/auth_token`` exists, but a joining
  ``ray start --address`` does not, and is then refused by the head.

``python -m qa.ray_engine start ...`` runs ``ray start`` in that same environment: how
the nodes of a cluster are started (README, "Running across machines").
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from qa.offline import OFFLINE_ENV

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
RAY_SITE = Path(__file__).resolve().parent / "ray_site"
# On Linux this switch is Ray's "may this node be part of a multi-node cluster": off,
# every address is loopback and no route is looked up. A cluster needs it on.
_LOCAL_ONLY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
STARTS = 3  # attempts at starting a local Ray
_QUIET = {"RAY_DEDUP_LOGS": "0", "RAY_DISABLE_IMPORT_WARNING": "1"}


class RayUnavailableError(RuntimeError):
    """Ray is not installed, or the cluster cannot be reached."""


def ray_environment(*, local: bool, base: dict | None = None) -> dict:
    """The environment Ray's processes must run in (a copy of ``base``, default os.environ)."""
    env = dict(os.environ if base is None else base)
    env.update(OFFLINE_ENV)
    env.update(_QUIET)
    if local:
        env.update(_LOCAL_ONLY)
    else:
        env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
        if "RAY_AUTH_MODE" not in env and _has_auth_token(env):
            env["RAY_AUTH_MODE"] = "token"
    paths = [str(RAY_SITE), str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                                          if p and p not in (str(RAY_SITE), str(ROOT))]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def _has_auth_token(env: dict) -> bool:
    """Whether Ray would find a cluster token: RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token."""
    if env.get("RAY_AUTH_TOKEN"):
        return True
    path = env.get("RAY_AUTH_TOKEN_PATH") or str(Path(env.get("HOME") or Path.home()) / ".ray" / "auth_token")
    return Path(path).is_file()


def _import_ray(local: bool):
    if "ray" not in sys.modules:
        # Ray reads these when it is imported (ray_constants), so they go first.
        os.environ.update(ray_environment(local=local))
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailableError('Ray is not installed: pip install "ray[data]==2.60.0"') from exc
    sys.path.insert(0, str(RAY_SITE))
    try:
        import sitecustomize  # qa/ray_site's, for this process too
    finally:
        sys.path.remove(str(RAY_SITE))
    if getattr(sitecustomize, "__file__", "") and Path(sitecustomize.__file__).parent == RAY_SITE:
        sitecustomize.install()
    else:  # another sitecustomize came first: load ours by path
        import importlib.util

        spec = importlib.util.spec_from_file_location("qa_ray_site", RAY_SITE / "sitecustomize.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return ray


def start_ray(address: str | None = None, *, num_cpus: int | None = None):
    """Ray, started here (``address`` None) or joined (a cluster's ``host:port``); once per process.

    Args:
        address: the head node's GCS address (``ray start --head`` prints it), or None
            for a Ray of this machine alone.
        num_cpus: for a local Ray: the cores it may use (default: this machine's).

    Returns:
        the ``ray`` module, initialized.

    Raises:
        RayUnavailableError: Ray is not installed, or the cluster does not answer.
    """
    ray = _import_ray(local=address is None)
    if ray.is_initialized():
        return ray
    options = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
                   configure_logging=True)
    for attempt in range(STARTS):
        try:
            if address is None:
                cpus = num_cpus or len(os.sched_getaffinity(0))
                ray.init(num_cpus=cpus, _node_ip_address="127.0.0.1", **options)
            else:
                # A cluster's processes run in the environment their `ray start` gave them
                # (python -m qa.ray_engine start); this driver's own is set above.
                ray.init(address=address, **options)
            break
        except (ConnectionError, TimeoutError) as exc:
            raise RayUnavailableError(f"no Ray cluster answers at {address}: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - Ray raises a bare Exception for this one
            # Ray gives its raylet 30 s to start, fixed; on a machine busy with other work that
            # is not always enough, and a second start usually is.
            if "timed out during startup" not in str(exc) or attempt == STARTS - 1:
                raise RayUnavailableError(f"Ray could not start: {exc}") from exc
            logger.warning("Ray did not start in time (%s); trying again", exc)
            ray.shutdown()
    logger.info("Ray %s: %s", "started here" if address is None else f"joined at {address}",
                ray.cluster_resources())
    return ray


def main(argv: list[str] | None = None) -> int:
    """``python -m qa.ray_engine start [ray start options]``: a Ray node, offline."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] != ["start"] and argv[:1] != ["stop"]:
        print("usage: python -m qa.ray_engine start|stop [ray start/stop options]", file=sys.stderr)
        return 2
    local = "--head" in argv and "--local" in argv
    args = [a for a in argv if a != "--local"]
    env = ray_environment(local=local)
    ray_cli = Path(sys.executable).with_name("ray")
    if argv[0] == "start" and "--disable-usage-stats" not in args:
        args.append("--disable-usage-stats")
    if argv[0] == "start" and "--head" in args and not any(a.startswith("--include-dashboard") for a in args):
        args.append("--include-dashboard=false")
    os.execve(str(ray_cli), [str(ray_cli), *args], env)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
