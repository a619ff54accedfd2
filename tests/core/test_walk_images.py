"""`walk_images`: the one folder walk of `inspector inspect` and `inspector bench`, which
follows symlinked folders and stops at a link back up the tree."""

from __future__ import annotations

from pathlib import Path

import cv2

from inspector.bench import load_images
from inspector.cli.inspect import expand_images
from inspector.core.datasets import walk_images
from tests.model_factory import part_image


def test_walk_follows_symlinked_folders_and_survives_link_cycles(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere" / "batch-7"
    elsewhere.mkdir(parents=True)
    cv2.imwrite(str(elsewhere / "b.png"), part_image())
    root = tmp_path / "frames"
    root.mkdir()
    cv2.imwrite(str(root / "a.png"), part_image())
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden.png").write_bytes(b"")
    (root / "linked").symlink_to(elsewhere, target_is_directory=True)
    (root / "loop").symlink_to(root, target_is_directory=True)  # a cycle

    found = walk_images([root])
    assert found == [root / "a.png", root / "linked" / "b.png"]
    assert expand_images([root]) == found
    assert len(load_images([root])) == 2
    single = tmp_path / "elsewhere" / "batch-7" / "b.png"
    assert walk_images([single, root])[0] == single
