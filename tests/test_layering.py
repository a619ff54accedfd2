"""The house's rooms and the arrows between them, checked from the imports themselves.

Every module under inspector/ is parsed with `ast` (imports inside functions count too) and
mapped to its room; an import from one room into another must be an arrow in ALLOWED, and
the rooms must form no cycle. A subprocess then builds the server app and checks that torch
and training/ stay out of it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "inspector"

#: room -> the rooms it may import. settings.py is the bottom every room but core may use;
#: core imports nothing else of inspector. The top-level tools (evaluation, report, synth,
#: bench, export) sit on core; `app` assembles the server, the review pages and the rest;
#: `demo` drives a whole app; `cli` may use everything. training/ is never imported by inspector:
#: `inspector train` reaches it by name (cli/model.py), in a command body only.
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "settings": {"core"},
    "store": {"core", "settings"},
    "publish": {"store", "core", "settings"},
    "lifecycle": {"store", "core", "settings"},
    "server": {"lifecycle", "publish", "store", "core", "settings"},
    "ui": {"server", "lifecycle", "store", "core", "settings"},
    "app": {"server", "ui", "lifecycle", "publish", "opcua", "store", "core", "settings"},
    "synth": set(),
    "progress": set(),
    "evaluation": {"core"},
    "report": {"evaluation", "core"},
    "bench": {"core"},
    "export": {"core"},
    "connect": {"core", "settings"},
    "opcua": {"store", "core", "settings"},
    "retrain": {"lifecycle", "connect", "store", "evaluation", "core"},
    "demo": {"app", "server", "connect", "synth", "store", "core", "settings"},
    "cli": {"app", "connect", "opcua", "demo", "retrain", "bench", "export", "synth", "progress",
            "evaluation", "report", "server", "ui", "lifecycle", "publish", "store", "core",
            "settings"},
}


def room_of(module: str) -> str | None:
    """`inspector.server.routes.inspect` -> `server`; None outside inspector."""
    parts = module.split(".")
    if parts[0] != "inspector" or len(parts) < 2:
        return None
    return parts[1]


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> set[str]:
    """Every module an inspector file imports, at any depth (relative imports resolved)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            out.add(base)
            # `from inspector import ui` imports the module inspector.ui
            out.update(f"{base}.{alias.name}" for alias in node.names)
    return out


def room_imports() -> dict[tuple[str, str], list[str]]:
    """(from room, to room) -> the modules that make that arrow."""
    arrows: dict[tuple[str, str], list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        src = room_of(module_name(path))
        if src is None:
            continue
        for target in imported_modules(path):
            dst = room_of(target)
            if dst is None or dst == src or dst not in ALLOWED:
                continue
            arrows.setdefault((src, dst), []).append(module_name(path))
    return arrows


def test_every_room_is_in_the_map() -> None:
    rooms = {room_of(module_name(p)) for p in PACKAGE.rglob("*.py")} - {None}
    assert rooms <= set(ALLOWED), f"add these to ALLOWED: {sorted(rooms - set(ALLOWED))}"


def test_imports_only_point_down() -> None:
    upward = {f"{src} -> {dst}": sorted(set(mods))
              for (src, dst), mods in room_imports().items() if dst not in ALLOWED[src]}
    assert not upward, f"imports against the allowed direction: {upward}"


def test_no_cycles_between_rooms() -> None:
    graph: dict[str, set[str]] = {}
    for src, dst in room_imports():
        graph.setdefault(src, set()).add(dst)
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path, node, nxt]))
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = 2

    for room in sorted(graph):
        if room not in state:
            visit(room, [])


def test_the_map_itself_has_no_cycles() -> None:
    done: set[str] = set()

    def depth(room: str, seen: tuple[str, ...]) -> None:
        assert room not in seen, "ALLOWED has a cycle: " + " -> ".join([*seen, room])
        if room not in done:
            for below in ALLOWED[room]:
                depth(below, (*seen, room))
            done.add(room)

    for room in ALLOWED:
        depth(room, ())


def test_server_app_loads_no_torch_and_no_training(tmp_path: Path) -> None:
    code = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from inspector.app import build_services, create_app
        from inspector.server.metrics import Metrics
        from inspector.settings import load_settings

        data = Path({str(tmp_path)!r})
        (data / "models").mkdir()
        settings = load_settings(None, data_dir=data / "state", models_dir=data / "models")
        app = create_app(settings)
        assert app.routes
        services = build_services(settings, Metrics())
        services.db.dispose()
        bad = sorted(m for m in sys.modules
                     if m == "torch" or m.startswith(("torch.", "training", "torchvision")))
        assert not bad, bad
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
