"""Tiled inference: cut a large frame into overlapping model-sized tiles, stitch their maps.

A card with a `tiling` section (`card.TilingSpec`) names a tile size in source pixels. The frame
is covered by a grid of tiles of that size, spread evenly along each axis so that neighbours
overlap by at least `overlap` of a tile and the first and last tiles lie flush with the frame's
edges (edge tiles are shifted inward, never padded). A frame narrower or shorter than a tile
gets one tile along that axis, clipped to the frame (and stretched to the input, as a
whole-frame model would). Each tile is resized to the model input; the tiles run in chunks of
the runtime's max_batch, on a CPU several chunks at once (`OnnxModel.run_chunks`), and their
maps are stitched into one map of the whole frame.

Stitching takes the maximum where tiles overlap. Why not the mean: the frame's score is the
maximum over its tiles, and the map should show where that score came from; a mean would dilute
a defect near one tile's edge with a neighbour's lower value, and draw a seam at every overlap
border where the count of covering tiles changes. The stitched map is kept at reduced scale:
at most the tiles' own map resolution and at most `MAP_MAX_SIDE` on its longer side, so a 20 MP
frame costs a few megabytes of float32, never a full-resolution float map.

Grids are computed in decoded pixels: a large JPEG decoded at 1/2, 1/4 or 1/8 scale (it only
is when that still leaves at least the model's scale, `decode_target`) gets tiles of
tile_width / reduction decoded pixels, the same content as full-resolution tiles.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from inspector.core.card import InputSpec, TilingSpec
from inspector.core.errors import ImageTooLargeError
from inspector.core.preprocess import interpolation, prepare

#: Most tiles one frame may be cut into; more is refused (413) from the header, before
#: decoding. 100 MP (the default max_pixels) with 448-px tiles and 25 % overlap needs about 900.
MAX_TILES = 2048
#: Longest side of a stitched anomaly map (float32: at most 16 MiB).
MAP_MAX_SIDE = 2048


@dataclass(frozen=True)
class TileGrid:
    """Where the tiles lie in a decoded frame: the tile size (clipped to the frame) and the
    top-left corners along each axis, all in decoded pixels."""

    frame_width: int
    frame_height: int
    tile_width: int
    tile_height: int
    xs: tuple[int, ...]
    ys: tuple[int, ...]

    @property
    def count(self) -> int:
        return len(self.xs) * len(self.ys)

    def boxes(self) -> Iterator[tuple[int, int, int, int]]:
        """(x, y, width, height) of every tile, row by row."""
        for y in self.ys:
            for x in self.xs:
                yield x, y, self.tile_width, self.tile_height


def axis_starts(length: int, tile: int, overlap: float) -> tuple[int, ...]:
    """Starts of tiles covering [0, length): the fewest tiles whose neighbours overlap by at
    least `overlap` of a tile, spread evenly, the last one ending at `length`. One start (0)
    when the tile is at least as long as the axis."""
    if tile >= length:
        return (0,)
    stride = max(1.0, tile * (1.0 - overlap))
    n = math.ceil((length - tile) / stride) + 1
    return tuple(round(i * (length - tile) / (n - 1)) for i in range(n))


def plan(width: int, height: int, spec: TilingSpec, reduction: int = 1) -> TileGrid:
    """The grid for a decoded frame of width x height, decoded at 1/`reduction` scale.
    Raises ImageTooLargeError when it takes more than MAX_TILES tiles."""
    tw = min(width, max(1, round(spec.tile_width / reduction)))
    th = min(height, max(1, round(spec.tile_height / reduction)))
    xs = axis_starts(width, tw, spec.overlap)
    ys = axis_starts(height, th, spec.overlap)
    if len(xs) * len(ys) > MAX_TILES:
        raise ImageTooLargeError(
            f"a {width * reduction}x{height * reduction} frame would be cut into "
            f"{len(xs) * len(ys)} tiles of {spec.tile_width}x{spec.tile_height} px, over the "
            f"limit of {MAX_TILES}",
            hint="send smaller frames (crop to the part at the camera) or use a model trained "
                 "on larger tiles",
        )
    return TileGrid(width, height, tw, th, xs, ys)


def decode_target(width: int, height: int, spec: TilingSpec, input_spec: InputSpec
                  ) -> tuple[int, int]:
    """A width x height frame's size at the model's scale (input pixels per tile pixel): the
    smallest decode that loses nothing the model would see (`images.jpeg_reduction`)."""
    return (math.ceil(width * input_spec.width / spec.tile_width),
            math.ceil(height * input_spec.height / spec.tile_height))


def cut(rgb: np.ndarray, grid: TileGrid, input_spec: InputSpec) -> np.ndarray:
    """Every tile of the grid resized to the model input: uint8 [count, H, W, 3]."""
    out = np.empty((grid.count, input_spec.height, input_spec.width, 3), dtype=np.uint8)
    for i, (x, y, w, h) in enumerate(grid.boxes()):
        out[i], _ = prepare(rgb[y : y + h, x : x + w], input_spec)
    return out


def cut_frame(rgb: np.ndarray, reduction: int, spec: TilingSpec, input_spec: InputSpec
              ) -> tuple[TileGrid, np.ndarray]:
    """A decoded frame (at 1/`reduction` scale) cut into its grid's tiles (`plan`, `cut`)."""
    h, w = rgb.shape[:2]
    grid = plan(w, h, spec, reduction)
    return grid, cut(rgb, grid, input_spec)


def stitched_size(grid: TileGrid, map_width: int, map_height: int,
                  max_side: int = MAP_MAX_SIDE) -> tuple[int, int, float]:
    """(width, height, scale) of the stitched map: scale = map pixels per decoded frame pixel,
    the tiles' own map resolution at most, and at most `max_side` on the longer side."""
    scale = min(map_width / grid.tile_width, map_height / grid.tile_height,
                max_side / max(grid.frame_width, grid.frame_height))
    return (max(1, round(grid.frame_width * scale)), max(1, round(grid.frame_height * scale)),
            scale)


class Stitcher:
    """Collects tile maps (in grid order, any number at a time) into one frame map (max in
    overlaps); the frame's score is the maximum of its tiles' scores."""

    def __init__(self, grid: TileGrid, max_side: int = MAP_MAX_SIDE) -> None:
        self.grid = grid
        self.max_side = max_side
        self.score = -math.inf
        self._boxes = list(grid.boxes())
        self._map: np.ndarray | None = None
        self._scale = 1.0

    def add(self, index: int, tile_map: np.ndarray, score: float) -> None:
        """Put tile `index`'s map [h, w] (over the whole model input) in its place."""
        mh, mw = tile_map.shape
        if self._map is None:
            w, h, self._scale = stitched_size(self.grid, mw, mh, self.max_side)
            self._map = np.full((h, w), -np.inf, dtype=np.float32)
        x, y, tw, th = self._boxes[index]
        s, (map_h, map_w) = self._scale, self._map.shape
        x0, y0 = min(round(x * s), map_w - 1), min(round(y * s), map_h - 1)
        x1, y1 = max(x0 + 1, round((x + tw) * s)), max(y0 + 1, round((y + th) * s))
        placed = cv2.resize(tile_map.astype(np.float32, copy=False), (x1 - x0, y1 - y0),
                            interpolation=interpolation(mw, mh, x1 - x0, y1 - y0))
        region = self._map[y0:y1, x0:x1]
        np.maximum(region, placed.reshape(region.shape), out=region)
        self.score = max(self.score, score)

    def result(self) -> np.ndarray:
        """The stitched map, float32 [h, w] over the whole frame (every tile added)."""
        if self._map is None:
            raise ValueError("no tile maps were added")
        return self._map


def tile_bytes(grid: TileGrid, input_spec: InputSpec, in_flight: int) -> int:
    """Memory a tiled frame adds in flight, beyond its decoded pixels: its tiles at the model
    input (uint8), the float32 maps at the input size (the largest map a graph gives) of the
    `in_flight` tiles inferred at once (max_batch x the runtime's chunk lanes) and the
    stitched map."""
    per_tile = input_spec.width * input_spec.height
    w, h, _ = stitched_size(grid, input_spec.width, input_spec.height)
    return grid.count * per_tile * 3 + min(grid.count, in_flight) * per_tile * 4 + w * h * 4
