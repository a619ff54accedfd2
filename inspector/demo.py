"""`inspector demo`: the whole product on one machine, offline, in a few minutes.

Steps: a small synthetic data set (`inspector.synth`), a small model trained on it by the
`inspector train` command in a child process (so this process, the server, never imports torch),
API keys, the server with the review pages, a mix of good and defective frames posted to two
stations, then the URLs and keys, and serving until Ctrl-C. A second run in the same folder
reuses the data set and the model and starts in seconds.
"""

from __future__ import annotations

import contextlib
import importlib.util
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.console import Console

from inspector.core.datasets import list_images
from inspector.core.errors import InspectorError
from inspector.core.names import ModelRef

MODEL = ModelRef("demo", "1")
STATIONS = ("press-1", "press-2")
console = Console(stderr=True, highlight=False)


class DemoError(InspectorError):
    """The demo cannot run here (port taken, training extra missing, training failed)."""


@dataclass(frozen=True)
class DemoConfig:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8000
    #: Frames posted once the server is up (half good, half defective).
    frames: int = 24
    #: Model input side and synthetic image side: small, so training takes seconds on a CPU.
    image_size: int = 128
    n_train: int = 40

    @property
    def dataset(self) -> Path:
        return self.data_dir / "dataset"

    @property
    def models(self) -> Path:
        return self.data_dir / "models"

    @property
    def state(self) -> Path:
        return self.data_dir / "state"

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def check_port(host: str, port: int) -> None:
    """Fail before the slow steps when the port is taken."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            raise DemoError(f"cannot listen on {host}:{port}: {exc.strerror}",
                            hint="pass another --port") from exc


def make_dataset(cfg: DemoConfig) -> Path:
    """The synthetic data set (MVTec layout), unless an earlier run made it."""
    from inspector.synth import SynthConfig, write_dataset

    if not (cfg.dataset / "test" / "good").is_dir():
        write_dataset(cfg.dataset, SynthConfig(n_train=cfg.n_train, n_test_good=12,
                                               n_test_defect=6, size=cfg.image_size, seed=0))
    return cfg.dataset


def train_model(cfg: DemoConfig) -> Path:
    """Train `demo:1` with `inspector train` in a child process, unless it exists."""
    target = cfg.models / MODEL.name / MODEL.version
    if (target / "card.json").is_file():
        return target
    for module in ("torch", "training"):
        if importlib.util.find_spec(module) is None:
            raise DemoError(f"the demo trains a model, which needs {module!r}",
                            hint="install the training extra: pip install -e '.[train]'")
    scratch = cfg.data_dir / ".training" / MODEL.name / MODEL.version
    shutil.rmtree(scratch.parent.parent, ignore_errors=True)  # left by an interrupted run
    cmd = [sys.executable, "-c", "from inspector.cli import main; main()", "train",
           "--data", str(cfg.dataset), "--out", str(scratch),
           "--set", f"image_size={cfg.image_size}"]
    if subprocess.run(cmd, check=False).returncode != 0:
        raise DemoError("training the demo model failed (see above)")
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch.rename(target)
    return target


def make_keys(cfg: DemoConfig) -> dict[str, str]:
    """A fresh camera, reviewer and admin key in the demo's database."""
    from inspector.store.db import Database
    from inspector.store.keys import create_key

    cfg.state.mkdir(parents=True, exist_ok=True)
    db = Database(f"sqlite:///{(cfg.state / 'inspector.db').resolve()}")
    try:
        db.migrate()
        return {role: create_key(db, role, f"demo-{role}")[1]
                for role in ("camera", "reviewer", "admin")}
    finally:
        db.dispose()


def demo_frames(cfg: DemoConfig) -> list[Path]:
    """Half good and half defective test images, shuffled with a fixed seed."""
    test = cfg.dataset / "test"
    good = list_images(test / "good")
    defects = [p for d in sorted(test.iterdir()) if d.is_dir() and d.name != "good"
               for p in list_images(d)]
    half = cfg.frames // 2
    picked = good[:half] + defects[::max(1, len(defects) // max(1, cfg.frames - half))][
        : cfg.frames - half]
    random.Random(0).shuffle(picked)
    return picked


def post_frames(url: str, camera_key: str, frames: list[Path]) -> Counter[str]:
    """POST each frame to a station (alternating); returns verdict counts."""
    verdicts: Counter[str] = Counter()
    with httpx.Client(base_url=url, timeout=60,
                      headers={"Authorization": f"Bearer {camera_key}"}) as client:
        for i, path in enumerate(frames):
            r = client.post("/v1/inspect", content=path.read_bytes(),
                            params={"station": STATIONS[i % len(STATIONS)],
                                    "part_id": f"demo-{i + 1:04d}"},
                            headers={"Content-Type": "image/png"})
            verdicts[r.json()["verdict"] if r.status_code == 200 else f"error {r.status_code}"] += 1
    return verdicts


def banner(cfg: DemoConfig, keys: dict[str, str], verdicts: Counter[str], seconds: float) -> str:
    counts = ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items()))
    sample = next(iter(sorted((cfg.dataset / "test").glob("*/000.png"))), None)
    return "\n".join([
        "",
        f"Inspector demo is running ({seconds:.0f} s to get here). Press Ctrl-C to stop.",
        f"  review queue   {cfg.url}/ui/   (sign in with the reviewer key)",
        f"  API docs       {cfg.url}/docs",
        f"  reviewer key   {keys['reviewer']}",
        f"  camera key     {keys['camera']}",
        f"  admin key      {keys['admin']}",
        f"  posted {sum(verdicts.values())} frames to {', '.join(STATIONS)}: {counts}",
        "  post one yourself:",
        f"    curl -H 'Authorization: Bearer {keys['camera']}' -H 'Content-Type: image/png' "
        f"--data-binary @{sample} '{cfg.url}/v1/inspect?station={STATIONS[0]}'",
        "",
    ])


def run_demo(cfg: DemoConfig) -> None:
    """Prepare, serve, post frames, print the URLs; returns when interrupted."""
    import uvicorn

    from inspector.app import create_app
    from inspector.server.logs import configure_logging
    from inspector.server.transport import server_options
    from inspector.settings import load_settings

    t0 = time.monotonic()
    check_port(cfg.host, cfg.port)
    console.print(f"[1/4] synthetic data set in {make_dataset(cfg)}")
    console.print("[2/4] training a small anomaly model (under a minute on 2 CPU cores)")
    console.print(f"      model package {train_model(cfg)}")
    keys = make_keys(cfg)
    ref = str(MODEL)
    settings = load_settings(models_dir=cfg.models, data_dir=cfg.state, host=cfg.host,
                             port=cfg.port, stations=dict.fromkeys(STATIONS, ref),
                             sample_passes=1.0, log_level="WARNING")
    configure_logging(settings.log_level, settings.log_format)
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host=cfg.host, port=cfg.port,
                                           log_config=None, access_log=False,
                                           timeout_graceful_shutdown=5,
                                           **server_options(settings)))
    console.print(f"[3/4] starting the server on {cfg.url}")

    def when_up() -> None:
        while not server.started:
            if server.should_exit:
                return
            time.sleep(0.05)
        console.print(f"[4/4] posting {cfg.frames} frames")
        try:
            verdicts = post_frames(cfg.url, keys["camera"], demo_frames(cfg))
        except (httpx.HTTPError, ValueError) as exc:
            console.print(f"[red]posting frames failed: {exc}[/red]")
            verdicts = Counter()
        print(banner(cfg, keys, verdicts, time.monotonic() - t0), flush=True)

    threading.Thread(target=when_up, name="demo-frames", daemon=True).start()
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    console.print("demo stopped; run it again to continue where you left off "
                  f"(state in {cfg.data_dir})")
