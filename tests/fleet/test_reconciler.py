"""The reconciler against a real registry, database and package store (in process): a node
fetches what the desired state names, and one that cannot load it keeps its model and says
why."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tarfile
from pathlib import Path

from sqlalchemy import select

from inspector.core.card import read_card
from inspector.core.errors import ModelPackageError
from inspector.core.names import ModelRef
from inspector.lifecycle.archive import Limits, pack
from inspector.lifecycle.deployer import Deployer
from inspector.lifecycle.distribution import Fleet, share
from inspector.lifecycle.reconciler import Reconciler
from inspector.lifecycle.registry import ModelRegistry
from inspector.server.metrics import Metrics
from inspector.settings import Settings
from inspector.store import deployments
from inspector.store.db import Database
from inspector.store.models import NodeStation
from inspector.store.packages import DatabasePackageStore
from tests.model_factory import make_package


def register(db: Database, pkg: Path, fleet: Fleet) -> None:
    card = read_card(pkg / "card.json")
    deployments.register_model_version(db, name=card.name, version=card.version, kind=card.kind,
                                       sha256=card.onnx_sha256,
                                       card_json=card.model_dump_json(), path="/elsewhere")
    share(fleet, pkg, card)


def node(db: Database, tmp_path: Path, verify: object = None) -> tuple[Deployer, Fleet]:
    models = tmp_path / "node-models"
    make_package(models)  # tiny:1, what the node runs at s1
    settings = Settings(models_dir=models, data_dir=tmp_path / "data", providers="cpu",
                        database_url=db.url, stations={"s1": "tiny:1"}, node_id="n1")
    registry = ModelRegistry(settings)
    registry.load_all()
    fleet = Fleet(db, DatabasePackageStore(db, chunk_bytes=4096), models, Limits(10**8),
                  verify=verify)  # type: ignore[arg-type]
    return Deployer(settings, registry, db, Metrics(), fleet=fleet), fleet


def outcome(db: Database) -> tuple[str | None, str | None, bool, str | None]:
    with db.session() as s:
        row = s.scalars(select(NodeStation).where(NodeStation.node_id == "n1",
                                                  NodeStation.station == "s1",
                                                  NodeStation.mode == "active")).one()
        return row.desired, row.running, row.ok, row.error


def desire(db: Database, version: str) -> None:
    deployments.apply(db, "s1", "test", {"active": ModelRef("tiny", version)})


async def reconcile(deployer: Deployer) -> None:
    deployer.registry.start()
    try:
        await Reconciler(deployer).reconcile_once()
    finally:
        await deployer.stop()
        await deployer.registry.stop()


def test_a_package_that_fails_to_load_leaves_the_old_model_and_reports_why(
        db: Database, tmp_path: Path) -> None:
    deployer, fleet = node(db, tmp_path)
    bad = make_package(tmp_path / "build", version="2")
    register(db, bad, fleet)  # shared intact, then damaged in the store: rebuild its archive
    (bad / "model.onnx").write_bytes(b"not a model")
    bad_archive = tmp_path / "bad.tar.gz"
    pack(bad, bad_archive)
    sha = fleet.store.put(bad_archive)
    deployments.set_package_sha(db, "tiny", "2", sha)
    desire(db, "2")
    asyncio.run(reconcile(deployer))
    assert deployer.registry.stations["s1"] == "tiny:1"
    desired, running, ok, error = outcome(db)
    assert (desired, running, ok) == ("tiny:2", "tiny:1", False)
    assert error is not None and "does not match card.json" in error
    assert not (deployer.settings.models_dir / "tiny" / "2").exists()


def test_the_node_fetches_verifies_and_runs_the_desired_model(db: Database,
                                                             tmp_path: Path) -> None:
    seen: list[list[str]] = []
    deployer, fleet = node(db, tmp_path,
                           verify=lambda root: seen.append(sorted(os.listdir(root))))
    register(db, make_package(tmp_path / "build", version="3"), fleet)
    desire(db, "3")
    asyncio.run(reconcile(deployer))
    assert deployer.registry.stations["s1"] == "tiny:3"
    assert outcome(db) == ("tiny:3", "tiny:3", True, None)
    installed = deployer.settings.models_dir / "tiny" / "3"
    assert (installed / "model.onnx").is_file()
    assert seen == [["card.json", "model.onnx", "report"]]  # checked before it was loaded


def test_a_refusing_verifier_keeps_the_package_out(db: Database, tmp_path: Path) -> None:
    def refuse(root: Path) -> None:
        raise ModelPackageError(f"{root.name}: no valid signature")

    deployer, fleet = node(db, tmp_path, verify=refuse)
    register(db, make_package(tmp_path / "build", version="4"), fleet)
    desire(db, "4")
    asyncio.run(reconcile(deployer))
    assert deployer.registry.stations["s1"] == "tiny:1"
    ok, error = outcome(db)[2:]
    assert not ok and error is not None and error.endswith("no valid signature")


def test_packing_is_reproducible(tmp_path: Path) -> None:
    pkg = make_package(tmp_path / "a")
    first, second = tmp_path / "1.tar.gz", tmp_path / "2.tar.gz"
    pack(pkg, first)
    (pkg / "card.json").touch()
    pkg.chmod(0o700)
    pack(pkg, second)
    assert first.read_bytes() == second.read_bytes()
    with tarfile.open(first) as tf:
        assert sorted(tf.getnames()) == ["card.json", "model.onnx", "report"]


def test_a_change_made_elsewhere_reaches_the_node_without_waiting_for_its_poll(
        db: Database, tmp_path: Path) -> None:
    """On PostgreSQL a deploy written by another node is heard at once (LISTEN/NOTIFY): with
    a one-hour poll the node still runs the new model within seconds."""
    import time

    if db.backend != "postgresql":
        import pytest

        pytest.skip("change notifications are PostgreSQL's (one SQLite node polls itself)")
    deployer, fleet = node(db, tmp_path)
    deployer.settings = deployer.settings.model_copy(update={"reconcile_s": 3600.0})
    register(db, make_package(tmp_path / "build", version="4"), fleet)
    other = Database(db.url)  # another node's connection

    async def scenario() -> float:
        deployer.registry.start()
        reconciler = Reconciler(deployer)
        task = asyncio.create_task(reconciler.run())
        try:
            await asyncio.sleep(1.0)  # the first pass, and the listener connects
            assert deployer.registry.stations["s1"] == "tiny:1"
            t0 = time.monotonic()
            await asyncio.to_thread(deployments.apply, other, "s1", "elsewhere",
                                    {"active": ModelRef("tiny", "4")})
            while deployer.registry.stations["s1"] != "tiny:4":
                assert time.monotonic() - t0 < 30, "the change was not heard"
                await asyncio.sleep(0.05)
            return time.monotonic() - t0
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await deployer.stop()
            await deployer.registry.stop()

    try:
        asyncio.run(scenario())
    finally:
        other.dispose()
    assert outcome(db) == ("tiny:4", "tiny:4", True, None)
