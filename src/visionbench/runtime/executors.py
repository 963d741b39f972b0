"""Executors: how a list of independent jobs (one per model of a run) is carried out —
here, one after the other (`local`), or as Ray tasks in parallel on this machine or a
cluster (`ray`). An executor knows nothing of training: it gets a task `(shared, item) ->
result`, the object every job shares (the prepared data), the items, and a callback for
each result as it arrives; it never loses a result that arrived before a failure or Ctrl-C.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from visionbench.data.cache import default_cache_root
from visionbench.errors import UserError
from visionbench.registry import Registry
from visionbench.schemas.execution import ExecutionConfig

Task = Callable[[Any, Any], Any]
Done = Callable[[Any, Any], None]
Executor = Callable[[Task, Any, list[str], ExecutionConfig, Done], None]
EXECUTORS: Registry[Executor] = Registry("executor")


@EXECUTORS.register("local")
def run_locally(task: Task, shared: Any, items: Sequence[Any], settings: ExecutionConfig,
                done: Done) -> None:
    """Each item in order, in this process."""
    for item in items:
        done(item, task(shared, item))


@EXECUTORS.register("ray")
def run_on_ray(task: Task, shared: Any, items: Sequence[Any], settings: ExecutionConfig,
               done: Done) -> None:
    """Every item as a Ray task asking `settings.cpus` CPUs and `settings.gpus` GPUs; the
    shared object goes to Ray's object store once (its arrays are read there without a copy
    per task on one machine). A local Ray started here requires token authentication (see
    `_check_local_ray_is_closed`) and stops when the items are done; Ctrl-C cancels the
    tasks still running."""
    ray = _ray()
    started_here = _start_ray(ray, settings)
    try:
        shared_ref = ray.put(shared)
        remote = ray.remote(task).options(num_cpus=settings.cpus, num_gpus=settings.gpus,
                                          max_retries=0)
        pending = {remote.remote(shared_ref, item): item for item in items}
        try:
            while pending:
                finished, _ = ray.wait(list(pending), num_returns=1)
                for ref in finished:
                    done(pending.pop(ref), ray.get(ref))
        except KeyboardInterrupt:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
    finally:
        if started_here:
            ray.shutdown()


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError("execution.executor: ray needs Ray: pip install 'visionbench[ray]'"
                        ) from None
    return ray


def _start_ray(ray: Any, settings: ExecutionConfig) -> bool:
    """Start (or join) Ray unless it runs already; whether it was started here."""
    if ray.is_initialized():
        return False
    if not (sys.stdout.isatty() and sys.stderr.isatty()):
        # Workers' lines forwarded into a log file carry no colour codes.
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")
    if settings.address:
        ray.init(address=settings.address, log_to_driver=True)
    else:
        _check_local_ray_is_closed(ray)
        ray.init(num_cpus=settings.local_cpus, include_dashboard=False, log_to_driver=True,
                 _node_ip_address=LOOPBACK_NODE, _temp_dir=str(ray_folder()))
    return True


# The address a local Ray's node gets. Ray replaces 127.0.0.1 (and "localhost") with the
# machine's outward address, where its agents then listen; any other 127.x address is
# loopback too on Linux and is kept.
LOOPBACK_NODE = "127.0.0.2" if sys.platform == "linux" else "127.0.0.1"
# Ray puts Unix sockets under its folder; their paths must stay under 108 bytes.
RAY_FOLDER_MAX = 48


def ray_folder() -> Path:
    """Where a local Ray keeps its session files and logs: `<cache>/ray` (emptied by
    `visionbench cache clear`), or a private folder in the system's temporary folder when
    the cache's path is too long for Ray's sockets."""
    folder = default_cache_root() / "ray"
    if len(str(folder.absolute())) > RAY_FOLDER_MAX:
        folder = Path(tempfile.gettempdir()) / f"visionbench-ray-{os.getuid()}"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder.absolute()


def _check_local_ray_is_closed(ray: Any) -> None:
    """Ray's gRPC servers listen on every interface and no setting of Ray moves them to
    loopback; what keeps other machines out is Ray's token authentication (on by default
    since Ray has it). Refuse to start a local Ray without it."""
    if os.environ.get("RAY_AUTH_MODE", "").strip().lower() == "disabled":
        raise UserError("RAY_AUTH_MODE=disabled: a local Ray without authentication would let "
                        "anyone who reaches this machine run code; unset RAY_AUTH_MODE")
    if not hasattr(ray._raylet, "AuthenticationTokenLoader"):
        raise UserError(f"Ray {ray.__version__} has no token authentication, and a local "
                        "Ray listens on every interface: pip install -U 'visionbench[ray]'")


@contextmanager
def executor_session(settings: ExecutionConfig) -> Iterator[None]:
    """Keep the executor's machinery up for a whole run: Ray is started (or joined) once,
    not for every batch of tasks, and stopped at the end if it was started here."""
    if settings.executor != "ray":
        yield
        return
    ray = _ray()
    started_here = _start_ray(ray, settings)
    try:
        yield
    finally:
        if started_here:
            ray.shutdown()
