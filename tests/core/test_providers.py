"""Provider choice (TensorRT, CUDA, CPU) with its reason, the TensorRT engine cache key, and
I/O binding: decided from a probe of the machine, so the GPU cases run here without a GPU
(a hand-made probe); the tests that start a GPU session carry the `gpu` marker."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from inspector.core import runtime
from inspector.core.pipeline import Detector
from inspector.core.providers import (
    CPU_EP,
    CUDA_EP,
    TRT_EP,
    DeviceProbe,
    EngineProfile,
    ProviderChoice,
    engine_cache_key,
    plan_providers,
)
from tests.model_factory import part_image

SHA = "ab" * 32
H100 = DeviceProbe(1, cuda_ep=True, trt_ep=True, trt_version="10.9.0",
                   gpu="NVIDIA H100 80GB HBM3")
NO_GPU = DeviceProbe(0, cuda_ep=True, trt_ep=True)  # onnxruntime-gpu on a CPU machine
NO_TRT_LIB = DeviceProbe(1, cuda_ep=True, trt_ep=True, trt_version=None, gpu="NVIDIA L4")
CPU_BUILD = DeviceProbe(1, cuda_ep=False, trt_ep=False, gpu="NVIDIA L4")

needs_gpu = pytest.mark.skipif(runtime.cuda_device_count() == 0,
                               reason="no usable CUDA device on this machine")


def _names(providers: list) -> list[str]:
    return [p[0] if isinstance(p, tuple) else p for p in providers]


@pytest.mark.parametrize(("choice", "probe", "kind", "reason"), [
    ("auto", NO_GPU, "cpu", "cpu: no CUDA device found"),
    ("cuda", NO_GPU, "cpu", "cpu: no CUDA device found"),
    ("tensorrt", NO_GPU, "cpu", "cpu: no CUDA device found"),
    ("cpu", H100, "cpu", "cpu: providers=cpu asked for"),
    ("auto", H100, "tensorrt", "tensorrt: TensorRT 10.9.0 on NVIDIA H100 80GB HBM3, fp16"),
    ("tensorrt", H100, "tensorrt", "tensorrt: TensorRT 10.9.0"),
    ("cuda", H100, "cuda", "cuda: providers=cuda asked for"),
    ("auto", NO_TRT_LIB, "cuda", "cuda: TensorRT provider not available (libnvinfer not found)"),
    ("tensorrt", NO_TRT_LIB, "cuda", "cuda: TensorRT provider not available"),
    ("auto", CPU_BUILD, "cpu", "cpu: this onnxruntime has no CUDA provider"),
])
def test_each_choice_on_each_machine_names_its_provider_and_why(
        choice: ProviderChoice, probe: DeviceProbe, kind: str, reason: str) -> None:
    plan = plan_providers(choice, probe=probe)
    assert plan.kind == kind
    assert plan.reason.startswith(reason), plan.reason
    expected = {"tensorrt": [TRT_EP, CUDA_EP, CPU_EP], "cuda": [CUDA_EP, CPU_EP],
                "cpu": [CPU_EP]}[kind]
    assert _names(plan.providers) == expected  # a GPU provider is never asked for without one


def test_a_device_number_the_machine_lacks_falls_back_to_cpu() -> None:
    plan = plan_providers("cuda", device_id=2, probe=H100)
    assert plan.kind == "cpu" and plan.reason == "cpu: no CUDA device 2 (1 found)"


def test_tensorrt_options_cache_engines_by_model_gpu_version_and_precision(
        tmp_path: Path) -> None:
    profile = EngineProfile("image", 224, 320, 32)
    plan = plan_providers("auto", probe=H100, cache_root=tmp_path, model_sha256=SHA,
                          profile=profile)
    trt = dict(plan.providers[0][1])  # type: ignore[index]
    key = engine_cache_key(SHA, "NVIDIA H100 80GB HBM3", "10.9.0", fp16=True)
    assert key == "abababababababab-nvidia-h100-80gb-hbm3-trt10.9.0-fp16"
    assert plan.engine_cache == tmp_path / key
    assert trt["trt_engine_cache_enable"] == "1"
    assert trt["trt_engine_cache_path"] == str(tmp_path / key)
    assert trt["trt_fp16_enable"] == "1"
    assert trt["trt_timing_cache_enable"] == "1"
    assert trt["trt_timing_cache_path"] == str(tmp_path / "timing-nvidia-h100-80gb-hbm3-trt10.9.0")
    # One engine for every batch size the server sends: never rebuilt on a new batch size.
    assert trt["trt_profile_min_shapes"] == "image:1x224x320x3"
    assert trt["trt_profile_max_shapes"] == "image:32x224x320x3"
    assert not plan.engine_built
    (tmp_path / key).mkdir()
    (tmp_path / key / "TensorrtExecutionProvider_TRTKernel_sm90.engine").write_bytes(b"x")
    assert plan.engine_built


def test_every_part_of_the_cache_key_changes_it() -> None:
    base = engine_cache_key(SHA, "NVIDIA H100", "10.9.0", True)
    others = {engine_cache_key("cd" * 32, "NVIDIA H100", "10.9.0", True),
              engine_cache_key(SHA, "NVIDIA L4", "10.9.0", True),
              engine_cache_key(SHA, "NVIDIA H100", "10.8.0", True),
              engine_cache_key(SHA, "NVIDIA H100", "10.9.0", False)}
    assert base not in others and len(others) == 4
    fp32 = plan_providers("tensorrt", probe=H100, fp16=False, cache_root=Path("c"),
                          model_sha256=SHA)
    assert fp32.reason.endswith("fp32") and str(fp32.engine_cache).endswith("-fp32")


def test_a_session_that_dropped_the_planned_provider_says_so() -> None:
    plan = plan_providers("auto", probe=H100)
    assert plan.settle(TRT_EP) == ("tensorrt", plan.reason)
    kind, reason = plan.settle(CUDA_EP)
    assert kind == "cuda" and reason.startswith("cuda: the tensorrt provider did not start")


def test_this_machine_serves_on_cpu_and_says_why(tiny_package: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    if runtime.cuda_device_count() > 0:
        pytest.skip("this machine has a CUDA device")
    with caplog.at_level(logging.INFO):
        det = Detector.load(tiny_package, runtime.RuntimeOptions(providers="tensorrt"))
    assert det.model.kind == "cpu" and det.model.provider == CPU_EP
    assert det.model.provider_reason == "cpu: no CUDA device found"
    assert det.model.runner is None  # plain session.run on the CPU
    warned = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in warned] == [
        "providers=tensorrt asked for; cpu: no CUDA device found"]


def test_io_binding_gives_the_plain_run_results(tiny_package: Path) -> None:
    plain = Detector.load(tiny_package, runtime.RuntimeOptions(providers="cpu", max_batch=4))
    bound = Detector.load(tiny_package, runtime.RuntimeOptions(providers="cpu", max_batch=4,
                                                               io_binding=True))
    assert bound.model.runner is not None
    frames = [part_image(64, 48, defect=i % 2 == 1, seed=i) for i in range(7)]
    for n in (1, 3, 7, 3):  # split batches, and a batch size seen before (buffer reused)
        batch = np.stack(frames[:n])
        a, b = plain.model.run(batch), bound.model.run(batch)
        assert set(a) == set(b)
        for name in a:
            np.testing.assert_array_equal(a[name], b[name])
    assert bound.model.stats.images == 1 + 3 + 7 + 3
    assert bound.model.stats.runs == 1 + 1 + 2 + 1


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("choice", ["cuda", "tensorrt"])
def test_gpu_session_binds_io_and_matches_the_cpu(tiny_package: Path, tmp_path: Path,
                                                  choice: ProviderChoice) -> None:
    cpu = Detector.load(tiny_package, runtime.RuntimeOptions(providers="cpu"))
    gpu = Detector.load(tiny_package, runtime.RuntimeOptions(
        providers=choice, max_batch=8, engine_cache_dir=tmp_path, trt_fp16=False))
    assert gpu.model.kind != "cpu", gpu.model.provider_reason
    assert gpu.model.runner is not None
    batch = np.stack([part_image(64, 48, defect=True, seed=i) for i in range(5)])
    a, b = cpu.model.run(batch), gpu.model.run(batch)
    np.testing.assert_allclose(a["score"], b["score"], rtol=1e-3, atol=1e-4)
    if gpu.model.kind == "tensorrt":
        assert any(tmp_path.rglob("*.engine")), "the engine was not cached"
