"""`inspector demo`: the whole product on one machine, offline, in a few minutes.

Steps: a small synthetic data set (`inspector.synth`), a small model trained on it by the
`inspector train` command in a child process (so this process, the server, never imports torch),
API keys, the server with the review pages (and, with the `connect` extra, its OPC UA endpoint
and a watched hot folder), a mix of good and defective frames posted to two stations, then the
URLs and keys, and serving until Ctrl-C. A second run in the same folder
reuses the data set, the model, its keys (kept in `demo-keys.json`, mode 0600) and the frames
it already posted, and starts in seconds.

The demo folder is a state folder like any other: its database and stored frames sit where
`--data-dir` puts them for `inspector serve` and `inspector keys`, so
`inspector keys create --data-dir <demo folder>` makes keys the running demo accepts.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.markup import escape

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
    #: OPC UA endpoint port on loopback (0: no OPC UA server).
    opcua_port: int = 4840

    @property
    def dataset(self) -> Path:
        return self.data_dir / "dataset"

    @property
    def models(self) -> Path:
        return self.data_dir / "models"

    @property
    def state(self) -> Path:
        """Database, artifacts, session secret: the demo folder itself, as `--data-dir`
        means for `inspector serve` and `inspector keys`."""
        return self.data_dir

    @property
    def keys_file(self) -> Path:
        return self.data_dir / "demo-keys.json"

    @property
    def opcua_file(self) -> Path:
        return self.data_dir / "demo-opcua.json"

    @property
    def watch(self) -> Path:
        """The hot folder: images dropped here are judged for the first station."""
        return self.data_dir / "watch"

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def check_port(host: str, port: int, option: str = "--port") -> None:
    """Fail before the slow steps when the port is taken."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        # As uvicorn binds: a port whose last connections linger in TIME_WAIT after Ctrl-C is
        # free to listen on again; one another process listens on is not.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise DemoError(f"cannot listen on {host}:{port}: {exc.strerror}",
                            hint=f"pass another {option}") from exc


def move_legacy_state(cfg: DemoConfig) -> None:
    """Demo folders made before the layout matched `--data-dir` kept their state one level
    deeper, in `state/`: move it up once, so their records and keys carry on."""
    old = cfg.data_dir / "state"
    if not (old / "inspector.db").is_file() or (cfg.state / "inspector.db").exists():
        return
    for entry in sorted(old.iterdir()):
        if not (cfg.state / entry.name).exists():
            entry.rename(cfg.state / entry.name)
    with contextlib.suppress(OSError):
        old.rmdir()


def has_dataset(cfg: DemoConfig) -> bool:
    return (cfg.dataset / "test" / "good").is_dir()


def make_dataset(cfg: DemoConfig) -> Path:
    """The synthetic data set (MVTec layout), unless an earlier run made it."""
    from inspector.synth import SynthConfig, write_dataset

    if not has_dataset(cfg):
        write_dataset(cfg.dataset, SynthConfig(n_train=cfg.n_train, n_test_good=12,
                                               n_test_defect=6, size=cfg.image_size, seed=0))
    return cfg.dataset


def model_dir(cfg: DemoConfig) -> Path:
    return cfg.models / MODEL.name / MODEL.version


def has_model(cfg: DemoConfig) -> bool:
    return (model_dir(cfg) / "card.json").is_file()


def train_model(cfg: DemoConfig) -> Path:
    """Train `demo:1` with `inspector train` in a child process, unless it exists."""
    target = model_dir(cfg)
    if has_model(cfg):
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


ROLES = ("camera", "reviewer", "admin")
OPCUA_USER = "demo"


def opcua_settings(cfg: DemoConfig) -> dict[str, Any]:
    """Settings for the demo's OPC UA endpoint on loopback, with user `demo` and a password
    kept in `demo-opcua.json` (0600); none when asyncua is missing or --opcua-port is 0."""
    if cfg.opcua_port == 0:
        return {}
    if importlib.util.find_spec("asyncua") is None:
        console.print("      no OPC UA endpoint: pip install 'inspector[opcua]' to see one")
        return {}
    check_port("127.0.0.1", cfg.opcua_port, "--opcua-port (0: no OPC UA)")
    try:
        password = str(json.loads(cfg.opcua_file.read_text(encoding="utf-8"))["password"])
    except (OSError, ValueError, KeyError, TypeError):
        password = secrets.token_urlsafe(12)
        _write_private(cfg.opcua_file, json.dumps({"user": OPCUA_USER, "password": password}))
    return {"opcua_endpoint": f"opc.tcp://127.0.0.1:{cfg.opcua_port}/inspector",
            "opcua_users": {OPCUA_USER: password}}


def watch_folder(cfg: DemoConfig, camera_key: str, stop: threading.Event) -> bool:
    """Judge images dropped into the demo's hot folder (for the first station) until `stop`;
    False when the watchdog library is missing."""
    if importlib.util.find_spec("watchdog") is None:
        return False
    from inspector.connect.folder import FolderConfig, HotFolder

    cfg.watch.mkdir(parents=True, exist_ok=True)
    hot = HotFolder(FolderConfig(watch=cfg.watch, station=STATIONS[0], url=cfg.url,
                                 key=camera_key))
    threading.Thread(target=hot.run, args=(stop,), name="demo-hot-folder", daemon=True).start()
    return True


def _read_keys(path: Path) -> dict[str, str]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return {k: v for k, v in doc.items() if k in ROLES and isinstance(v, str)} if isinstance(
        doc, dict) else {}


def _write_private(path: Path, text: str) -> None:
    """Write `text` to a file only its owner may read (mode 0600), replacing it whole."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o600)  # the mode above is masked by the umask; this one is not
    tmp.replace(path)


def _database(cfg: DemoConfig) -> Any:
    from inspector.store.db import Database

    cfg.state.mkdir(parents=True, exist_ok=True)
    db = Database(f"sqlite:///{(cfg.state / 'inspector.db').resolve()}")
    db.migrate()
    return db


def make_keys(cfg: DemoConfig) -> dict[str, str]:
    """A camera, reviewer and admin key: those of an earlier run (`demo-keys.json`) while the
    database still accepts them, new ones for the rest."""
    from inspector.store.keys import create_key, verify_key

    db = _database(cfg)
    try:
        kept = {role: key for role, key in _read_keys(cfg.keys_file).items()
                if (info := verify_key(db, key)) is not None and info.role == role}
        keys = {role: kept.get(role) or create_key(db, role, f"demo-{role}")[1]
                for role in ROLES}
    finally:
        db.dispose()
    if keys != kept:
        _write_private(cfg.keys_file, json.dumps(keys, indent=2) + "\n")
    return keys


def part_id(i: int) -> str:
    return f"demo-{i + 1:04d}"


def posted_part_ids(cfg: DemoConfig) -> set[str]:
    """Part ids the demo's stations already hold records for (from earlier runs)."""
    from inspector.store.inspections import InspectionQuery, list_inspections

    db = _database(cfg)
    found: set[str] = set()
    try:
        for station in STATIONS:
            before: str | None = None
            while True:
                rows, before = list_inspections(
                    db, InspectionQuery(station=station, before=before, limit=500))
                found.update(r.part_id for r in rows if r.part_id)
                if before is None:
                    break
    finally:
        db.dispose()
    return found


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


def post_frames(url: str, camera_key: str, frames: list[Path],
                skip: Collection[str] = ()) -> Counter[str]:
    """POST each frame to a station (alternating), except the part ids in `skip` (posted by
    an earlier run); returns verdict counts."""
    verdicts: Counter[str] = Counter()
    with httpx.Client(base_url=url, timeout=60,
                      headers={"Authorization": f"Bearer {camera_key}"}) as client:
        for i, path in enumerate(frames):
            if part_id(i) in skip:
                continue
            r = client.post("/v1/inspect", content=path.read_bytes(),
                            params={"station": STATIONS[i % len(STATIONS)],
                                    "part_id": part_id(i)},
                            headers={"Content-Type": "image/png"})
            verdicts[r.json()["verdict"] if r.status_code == 200 else f"error {r.status_code}"] += 1
    return verdicts


def banner(cfg: DemoConfig, keys: dict[str, str], verdicts: Counter[str], seconds: float,
           earlier: int = 0, opcua: dict[str, Any] | None = None, watching: bool = False) -> str:
    counts = ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items()))
    posted = f"  posted {sum(verdicts.values())} frames to {', '.join(STATIONS)}"
    posted += f": {counts}" if verdicts else ""
    if earlier:
        posted += f" ({earlier} posted by an earlier run are still there)"
    sample = next(iter(sorted((cfg.dataset / "test").glob("*/000.png"))), None)
    line = []
    if opcua:
        password = opcua["opcua_users"][OPCUA_USER]
        line.append(f"  OPC UA         {opcua['opcua_endpoint']}   (user {OPCUA_USER}, password "
                    f"{password}; Stations/{STATIONS[0]}/LastVerdict, ...)")
    if watching:
        line.append(f"  hot folder     {cfg.watch}   (drop images: judged for {STATIONS[0]}, "
                    "moved to done/ with a .json verdict)")
    return "\n".join([
        "",
        f"Inspector demo is running ({seconds:.0f} s to get here). Press Ctrl-C to stop.",
        f"  review queue   {cfg.url}/ui/   (sign in with the reviewer key)",
        f"  API docs       {cfg.url}/docs",
        f"  reviewer key   {keys['reviewer']}",
        f"  camera key     {keys['camera']}",
        f"  admin key      {keys['admin']}",
        *line,
        posted,
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
    move_legacy_state(cfg)
    step1 = "reusing the synthetic data set" if has_dataset(cfg) else "synthetic data set"
    console.print(f"[1/4] {step1} in {escape(str(make_dataset(cfg)))}")
    if has_model(cfg):
        console.print(f"[2/4] reusing the model package {escape(str(model_dir(cfg)))}")
    else:
        console.print("[2/4] training a small anomaly model (under a minute on 2 CPU cores)")
        console.print(f"      model package {escape(str(train_model(cfg)))}")
    keys = make_keys(cfg)
    opcua = opcua_settings(cfg)
    frames = demo_frames(cfg)
    done = posted_part_ids(cfg) & {part_id(i) for i in range(len(frames))}
    ref = str(MODEL)
    settings = load_settings(models_dir=cfg.models, data_dir=cfg.state, host=cfg.host,
                             port=cfg.port, stations=dict.fromkeys(STATIONS, ref),
                             sample_passes=1.0, log_level="WARNING", **opcua)
    configure_logging(settings.log_level, settings.log_format)
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host=cfg.host, port=cfg.port,
                                           log_config=None, access_log=False,
                                           timeout_graceful_shutdown=5,
                                           **server_options(settings)))
    console.print(f"[3/4] starting the server on {escape(cfg.url)}")
    stop_watching = threading.Event()

    def when_up() -> None:
        while not server.started:
            if server.should_exit:
                return
            time.sleep(0.05)
        watching = watch_folder(cfg, keys["camera"], stop_watching)
        todo = len(frames) - len(done)
        console.print(f"[4/4] posting {todo} frames" + (
            f" ({len(done)} posted by an earlier run)" if done else ""))
        try:
            verdicts = post_frames(cfg.url, keys["camera"], frames, done)
        except (httpx.HTTPError, ValueError) as exc:
            console.print(f"[red]posting frames failed: {escape(str(exc))}[/red]")
            verdicts = Counter()
        print(banner(cfg, keys, verdicts, time.monotonic() - t0, len(done), opcua, watching),
              flush=True)

    threading.Thread(target=when_up, name="demo-frames", daemon=True).start()
    try:
        with contextlib.suppress(KeyboardInterrupt):
            server.run()
    finally:
        stop_watching.set()
    console.print("demo stopped; run it again to continue where you left off "
                  f"(state in {escape(str(cfg.data_dir))})")
