"""Executors: how a list of independent jobs (one per model of a run) is carried out —
here, one after the other (`local`), or as Ray tasks in parallel on this machine or a
cluster (`ray`). An executor knows nothing of training: it gets a task `(shared, item) ->
result`, the object every job shares (the prepared data), the items, and a callback for
each result as it arrives; it never loses a result that arrived before a failure or Ctrl-C.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from visionbench.errors import UserError
from visionbench.registry import Registry
from visionbench.schemas.execution import ExecutionConfig

Task = Callable[[Any, str], Any]
Done = Callable[[str, Any], None]
Executor = Callable[[Task, Any, list[str], ExecutionConfig, Done], None]
EXECUTORS: Registry[Executor] = Registry("executor")


@EXECUTORS.register("local")
def run_locally(task: Task, shared: Any, items: list[str], settings: ExecutionConfig,
                done: Done) -> None:
    """Each item in order, in this process."""
    for item in items:
        done(item, task(shared, item))


@EXECUTORS.register("ray")
def run_on_ray(task: Task, shared: Any, items: list[str], settings: ExecutionConfig,
               done: Done) -> None:
    """Every item as a Ray task asking `settings.cpus` CPUs and `settings.gpus` GPUs; the
    shared object goes to Ray's object store once (its arrays are read there without a copy
    per task on one machine). A local Ray started here listens on 127.0.0.1 only and stops
    when the items are done; Ctrl-C cancels the tasks still running."""
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
    if settings.address:
        ray.init(address=settings.address, log_to_driver=True)
    else:
        ray.init(num_cpus=settings.local_cpus, include_dashboard=False, log_to_driver=True,
                 _node_ip_address="127.0.0.1")
    return True


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
