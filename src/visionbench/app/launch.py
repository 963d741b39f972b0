"""Starting the app: a small launch folder (the entry script, its settings, a copy of the
run's report to link to) and Streamlit's server on it, offline and on 127.0.0.1 unless
told otherwise. Imports no Streamlit: the server runs in its own process.
"""

from __future__ import annotations

import importlib.util
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from pydantic import BaseModel, ConfigDict

from visionbench.app.uploads import UploadLimits
from visionbench.errors import UserError
from visionbench.fileio import write_text
from visionbench.report.build import build_report
from visionbench.rundir import ExportFolder, Leaderboard, RunFolder
from visionbench.rundir.layout import REPORT

# Streamlit serves the launch folder's `static/` at `app/static/` (enableStaticServing);
# the run's report is copied there under its own name.
STATIC = "static"
REPORT_URL = f"app/{STATIC}/{REPORT}"
SETTINGS_FILE = "app.json"
ENTRY_SCRIPT = "visionbench_app.py"
# The entry script only hands over to the package: nothing of the run is written as code.
ENTRY = f"""from pathlib import Path

from visionbench.app.pages import main

main(Path(__file__).with_name({SETTINGS_FILE!r}))
"""


class AppSettings(BaseModel):
    """What the app serves: a run folder, the model selected at first (None: the one the
    run recommends), and whether the run has a report to link to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_dir: Path
    model: str | None = None
    report: bool = False


def write_launch_folder(run_dir: Path, model: str | None, folder: Path) -> Path:
    """Write the entry script, its settings and a copy of the run's report into `folder`;
    the entry script's path. A folder that is not a finished run is a UserError."""
    if ExportFolder(run_dir).is_export():
        raise UserError(f"{run_dir} is an export: the app serves a run folder (its "
                        "leaderboard, explanations and report); an export is served by your "
                        "own program (docs/deploy.md)")
    run = RunFolder(run_dir.resolve()).check()
    report = run.has(Leaderboard)
    if report:
        # Served at the app's own origin, so it is rebuilt here from the run's documents
        # (every value escaped) rather than copied: a received report.html could carry a
        # script that would then talk to the app.
        write_text(folder / STATIC / run.report_file.name, build_report(run, "quiet"))
    settings = AppSettings(run_dir=run.path, model=model, report=report)
    write_text(folder / SETTINGS_FILE, settings.model_dump_json(indent=2))
    write_text(folder / ENTRY_SCRIPT, ENTRY)
    return folder / ENTRY_SCRIPT


def streamlit_command(script: Path, host: str, port: int,
                      limits: UploadLimits | None = None) -> list[str]:
    """The command that serves `script`: headless, usage statistics off, no file watcher,
    uploads capped at the app's size limit, the launch folder's `static/` served."""
    limits = limits or UploadLimits()
    options = {
        "server.address": host,
        "server.port": port,
        "server.headless": "true",
        "server.fileWatcherType": "none",
        "server.enableStaticServing": "true",
        "server.maxUploadSize": limits.megabytes,
        # A closed browser's uploads are freed after this many seconds (default 120).
        "server.disconnectedSessionTTL": 20,
        "browser.gatherUsageStats": "false",
        "browser.serverAddress": host,
        "global.developmentMode": "false",
        "client.toolbarMode": "viewer",
    }
    return [sys.executable, "-m", "streamlit", "run", str(script),
            *(f"--{name}={value}" for name, value in options.items())]


def check_port(host: str, port: int) -> None:
    """A UserError when `port` cannot be listened on at `host` (taken, or not an address
    of this machine), so the server does not start only to fail."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port} ({exc.strerror or exc}): choose "
                        "another --port, or a --host of this machine") from None


def serve(run_dir: Path, model: str | None, host: str, port: int,
          announce: Callable[[str], None] = print) -> int:
    """Serve the app of `run_dir` until interrupted (Ctrl-C, or SIGTERM to this process,
    which is passed on to the server); the server's exit code. `announce` gets the address
    once the run and the port are checked."""
    if importlib.util.find_spec("streamlit") is None:
        raise UserError("the app needs Streamlit: pip install 'visionbench[app]'")
    from visionbench.predict import load

    # Load the model once here so a wrong name or an unfinished run is a one-line answer
    # before any server starts.
    predictor = load(run_dir, model)
    check_port(host, port)
    announce(f"app: http://{host}:{port} serving {run_dir} (model {predictor.name} first); "
             "Ctrl-C stops it")
    with tempfile.TemporaryDirectory(prefix="visionbench-app-") as folder:
        script = write_launch_folder(run_dir, model, Path(folder))
        server = subprocess.Popen(streamlit_command(script, host, port), cwd=folder)

        def stop(signum: int, frame: FrameType | None) -> None:
            server.terminate()

        previous = signal.signal(signal.SIGTERM, stop)
        try:
            return server.wait()
        except KeyboardInterrupt:
            # Ctrl-C reached the server too (same process group): let it finish cleanly.
            return server.wait()
        finally:
            signal.signal(signal.SIGTERM, previous)
