"""Loss forward + backward with nnU-Net's deep supervision: every loss against nnU-Net's ``DC_and_CE_loss``.

What one measurement is (the same for every row, on identical inputs):

* the network topology (pooling per stage) comes from nnU-Net's planner function
  ``get_pool_and_conv_props(spacing=1, patch, min feature map 4)``; the deep-supervision scales and
  weights from ``nnUNetTrainer._get_deep_supervision_scales`` / ``nnUNetTrainer._build_loss``
  (called on a stand-in trainer object, so nnU-Net's own code decides);
* the baseline is exactly what ``nnUNetTrainer._build_loss`` returns for label training:
  ``DeepSupervisionWrapper(DC_and_CE_loss(..., dice_class=MemoryEfficientSoftDiceLoss))`` (with
  ``loss.dc`` compiled when compiling, as nnU-Net does);
* every nnunet-losses loss is built as our trainers build it (softmax, ``batch_dice`` from the
  plans: True for 2d, False for 3d_fullres) and wrapped in the same ``DeepSupervisionWrapper`` with
  the same weights (compiled as a whole when compiling, as ``nnUNetTrainerLossBase`` does);
* inputs: one logits tensor per scale (leaf tensors, ``requires_grad``) and one int16 target per
  scale made by nnU-Net's ``DownsampleSegForDSTransform`` from a blob-shaped label map;
* "stored maps": contour / band / offset band / U-Net weight map of every scale computed before
  the timed region and passed as ``contour=`` / ``band=`` / ``offset_band=`` / ``weight_map=``;
  "on the fly": ``None``, the loss builds them from the target inside the timed region;
* one call = ``loss(outputs, targets, *maps).backward()``; rounds visit every row in a shuffled
  order (interleaved), the first ``warmup`` rounds are discarded, the median is reported and the
  ratio is median(row) / median(nnU-Net) of the same run. On CPU with one torch thread the clock is
  the thread's CPU time (other processes on a shared machine do not count), else the wall clock.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

import nnunet_losses as nl
from nnunet_losses.morphology import torch_ops as morphology

#: (batch, patch) per dimension; "cpu" is the default on CPU, "gpu" nnU-Net's typical GPU sizes
SIZES = {
    "cpu": {2: (12, (128, 128)), 3: (2, (48, 48, 48))},
    "gpu": {2: (12, (512, 512)), 3: (2, (128, 128, 128))},
    "tiny": {2: (2, (32, 32)), 3: (1, (16, 16, 16))},
}
CLASSES = (2, 4, 16)
BASELINE = "nnU-Net DC_and_CE"


@dataclass(frozen=True)
class Row:
    """One row of the loss table."""

    key: str                      # unique display name
    loss: str                     # nnunet_losses class name
    maps: str                     # "-", "stored", "on the fly", "stored weight map"
    target: Optional[float] = None
    gpu_only_target: bool = False  # the target applies to GPU runs (on CPU the ratio is informational)
    map_names: Tuple[str, ...] = ()

    def make(self) -> nn.Module:
        return getattr(nl, self.loss)()


def _rows() -> List[Row]:
    rows = [
        Row("DiceCE (ours)", "DiceCELoss", "-"),
        Row("SoftDice", "SoftDiceLoss", "-"),
        Row("Combo", "ComboLoss", "-", 1.10),
        Row("AsymFbeta", "AsymmetricFbetaLoss", "-", 1.10),
        Row("Tversky", "TverskyLoss", "-", 1.10),
        Row("GDL", "GeneralizedDiceLoss", "-", 1.10),
        Row("Focal", "FocalLoss", "-", 1.10),
        Row("FocalDice", "FocalDiceLoss", "-"),
        Row("TopKDice", "TopKDiceLoss", "-", 1.5),
        Row("CETopKDice", "CETopKDiceLoss", "-", 1.5),
        Row("DWCE", "DistanceWeightedCELoss", "stored weight map", None, False, ("weight_map",)),
    ]
    contour = [("CWCE", "ContourWeightedCELoss", ("boundary_band",)), ("SDL", "SeparableDiceLoss", ("contour",)),
               ("CWCD", "CWCDLoss", ("contour", "boundary_band"))]
    for short, cls, names in contour:
        rows.append(Row(f"{short} stored", cls, "stored", 1.25, False, names))
        rows.append(Row(f"{short} on the fly", cls, "on the fly", 1.35, True, ()))
    rows.append(Row("OsC stored", "OffsetCurvesLoss", "stored", 1.5, False, ("offset_band",)))
    rows.append(Row("OsC on the fly", "OffsetCurvesLoss", "on the fly", 1.5, False, ()))
    rows.append(Row("SkeletonRecall stored", "DiceCESkeletonRecallLoss", "stored", 1.15, False, ("skeleton",)))
    rows.append(Row("SkeletonRecall on the fly", "DiceCESkeletonRecallLoss", "on the fly (CPU skeletonize)", None,
                    False, ()))
    rows.append(Row("clDice", "SoftclDiceLoss", "-", 2.0))
    return rows


ROWS = _rows()


# ----------------------------------------------------------------------------- nnU-Net's side
def topology(dim: int, patch: Sequence[int]) -> Tuple[List[List[int]], Tuple[int, ...]]:
    """nnU-Net planner's pooling per stage and the (possibly adjusted) patch for isotropic spacing."""
    from nnunetv2.experiment_planning.experiment_planners.network_topology import get_pool_and_conv_props
    _, pools, _, new_patch, _ = get_pool_and_conv_props([1.0] * dim, list(patch), 4, 999999)
    return [[int(k) for k in p] for p in pools], tuple(int(s) for s in new_patch)


def nnunet_loss(batch_dice: bool, pools: List[List[int]], compiled: bool):
    """(loss, deep-supervision scales) exactly as ``nnUNetTrainer._build_loss`` builds them (label training)."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    fake = SimpleNamespace(
        label_manager=SimpleNamespace(has_regions=False, ignore_label=None),
        configuration_manager=SimpleNamespace(batch_dice=batch_dice, pool_op_kernel_sizes=pools),
        is_ddp=False, enable_deep_supervision=True)
    fake._do_i_compile = lambda: compiled
    fake._get_deep_supervision_scales = lambda: nnUNetTrainer._get_deep_supervision_scales(fake)
    loss = nnUNetTrainer._build_loss(fake)
    return loss, fake._get_deep_supervision_scales()


class MapsAsPositional(nn.Module):
    """nnU-Net's ``DeepSupervisionWrapper`` passes positional arguments only; our maps are keywords."""

    def __init__(self, loss: nn.Module, names: Sequence[str]):
        super().__init__()
        self.loss, self.names = loss, tuple(names)

    def forward(self, logits, target, *maps):
        return self.loss(logits, target, **dict(zip(self.names, maps)))


# ----------------------------------------------------------------------------- inputs
def blob_labels(batch: int, patch: Sequence[int], num_classes: int, seed: int = 0) -> np.ndarray:
    """(B, 1, *patch) int16 labels made of smooth blobs (argmax of smoothed noise, background favoured)."""
    from scipy.ndimage import gaussian_filter
    rng = np.random.default_rng(seed)
    sigma = max(1.0, min(patch) / 16)
    fields = rng.standard_normal((batch, num_classes, *patch), dtype=np.float32)
    fields = gaussian_filter(fields, sigma=(0, 0) + (sigma,) * len(patch))
    fields[:, 0] += 1.0 * fields.std()
    return fields.argmax(1)[:, None].astype(np.int16)


@dataclass
class Problem:
    """Inputs of one (dim, classes) benchmark, on the benchmark device."""

    dim: int
    num_classes: int
    batch: int
    patch: Tuple[int, ...]
    batch_dice: bool
    pools: List[List[int]]
    scales: List[List[float]]
    weights: Tuple[float, ...]
    outputs: List[torch.Tensor]
    targets: List[torch.Tensor]
    maps: Dict[str, List[torch.Tensor]] = field(default_factory=dict)

    def describe(self) -> dict:
        return {"dim": self.dim, "num_classes": self.num_classes, "batch": self.batch, "patch": list(self.patch),
                "batch_dice": self.batch_dice, "pool_op_kernel_sizes": self.pools,
                "ds_scales": [[float(s) for s in sc] for sc in self.scales], "ds_weights": list(self.weights),
                "scale_shapes": [list(t.shape[2:]) for t in self.targets]}


def make_problem(dim: int, num_classes: int, batch: int, patch: Sequence[int], device: torch.device,
                 logits_dtype: torch.dtype, seed: int = 0) -> Problem:
    from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform
    pools, patch = topology(dim, patch)
    batch_dice = dim == 2  # nnU-Net's planner: 2d True, 3d_fullres False (no 3d_lowres)
    base, scales = nnunet_loss(batch_dice, pools, False)
    seg = torch.from_numpy(blob_labels(batch, patch, num_classes, seed))
    per_scale = DownsampleSegForDSTransform(scales)(segmentation=seg[:, 0])["segmentation"]
    targets = [t[:, None].contiguous().to(device) for t in per_scale]
    g = torch.Generator().manual_seed(seed + 1)
    outputs = [(2.0 * torch.randn((batch, num_classes, *t.shape[2:]), generator=g)).to(device, logits_dtype)
               .requires_grad_(True) for t in targets]
    prob = Problem(dim, num_classes, batch, tuple(patch), batch_dice, pools, [list(s) for s in scales],
                   tuple(float(w) for w in base.weight_factors), outputs, targets)
    prob.maps = stored_maps(prob)
    return prob


def stored_maps(prob: Problem) -> Dict[str, List[torch.Tensor]]:
    """Every map of every scale, computed before timing (what a map-aware data loader delivers)."""
    from nnunet_losses.nnunet.maps.online import unet_weight_maps
    c = prob.num_classes
    maps = {"boundary_band": [], "contour": [], "offset_band": []}
    for t in prob.targets:
        maps["boundary_band"].append(morphology.boundary_band(t, c).contiguous())
        maps["contour"].append(morphology.class_contours(t, c).contiguous())
        maps["offset_band"].append(morphology.offset_band(t, c, band=3).contiguous())
    cpu_targets = [t.cpu() for t in prob.targets]
    from nnunet_losses.morphology.skeletons import skeleton_map
    maps["skeleton"] = [torch.from_numpy(np.stack([skeleton_map(x[0].numpy(), num_classes=c) for x in t]))
                        .to(prob.targets[0].device).contiguous() for t in cpu_targets]
    maps["weight_map"] = [w.to(prob.targets[0].device) for w in unet_weight_maps(cpu_targets, sigmoid=False)]
    return maps


# ----------------------------------------------------------------------------- timing
def device_sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Variant:
    name: str          # eager, amp, compile, compile-amp
    amp: bool
    compiled: bool

    @staticmethod
    def parse(name: str) -> "Variant":
        if name not in ("eager", "amp", "compile", "compile-amp"):
            raise ValueError(f"unknown variant {name!r}; choose from eager, amp, compile, compile-amp")
        return Variant(name, "amp" in name, name.startswith("compile"))


def amp_dtype(device: torch.device) -> torch.dtype:
    return torch.float16 if device.type == "cuda" else torch.bfloat16


def allow_many_graphs() -> None:
    """Raise dynamo's cache limits (8 graphs per code object by default): a benchmark that compiles many
    losses or networks of one class in one process would otherwise send the later ones back to eager."""
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 4096)
    if hasattr(torch._dynamo.config, "accumulated_cache_size_limit"):
        torch._dynamo.config.accumulated_cache_size_limit = max(
            torch._dynamo.config.accumulated_cache_size_limit, 1 << 16)


def build_calls(prob: Problem, rows: Sequence[Row], variant: Variant, device: torch.device
                ) -> Dict[str, Callable[[], None]]:
    """One closure per row (and the baseline) doing forward + backward on the problem's inputs."""
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
    if variant.compiled:
        # every loss shares LossBase.forward's code object and every deep-supervision scale has its own shape:
        # dynamo's default cache limit (8 graphs per code object) would send most rows back to eager here,
        # while a trainer holds one loss. Start clean for each problem and allow enough graphs.
        torch._dynamo.reset()
        allow_many_graphs()
    base, _ = nnunet_loss(prob.batch_dice, prob.pools, variant.compiled)
    losses: Dict[str, Tuple[nn.Module, list]] = {BASELINE: (base, [])}
    for row in rows:
        inner = getattr(nl, row.loss)(batch_dice=prob.batch_dice) if _takes_batch_dice(row.loss) else row.make()
        if variant.compiled:
            inner = torch.compile(inner)
        wrapped = DeepSupervisionWrapper(MapsAsPositional(inner, row.map_names), prob.weights)
        losses[row.key] = (wrapped, [prob.maps[n] for n in row.map_names])
    calls = {}
    for key, (loss, maps) in losses.items():
        calls[key] = _closure(loss, prob, maps, variant, device)
    return calls


def _takes_batch_dice(cls_name: str) -> bool:
    import inspect
    return "batch_dice" in inspect.signature(getattr(nl, cls_name).__init__).parameters


def _closure(loss: nn.Module, prob: Problem, maps: list, variant: Variant, device: torch.device):
    outputs, targets = prob.outputs, prob.targets

    def call():
        for o in outputs:
            o.grad = None
        with torch.autocast(device.type, dtype=amp_dtype(device), enabled=variant.amp):
            value = loss(outputs, targets, *maps)
        value.backward()
    return call


def device_clock(device: torch.device) -> Callable[[], float]:
    """CPU runs with one torch thread: the CPU time of the calling thread (the work runs there), so time the
    machine spends on other processes does not count (on a shared machine wall-clock ratios swing by 2x);
    CUDA: wall clock around synchronisations."""
    if device.type == "cpu" and torch.get_num_threads() == 1:
        return time.thread_time
    return time.perf_counter


def time_calls(calls: Dict[str, Callable[[], None]], device: torch.device, repeats: int, warmup: int,
               seed: int = 0, tick: Optional[Callable[[], None]] = None) -> Tuple[Dict[str, List[float]], Dict[str, str]]:
    """Interleaved timing: each round runs every call once, in a shuffled order."""
    rng = random.Random(seed)
    clock = device_clock(device)
    times: Dict[str, List[float]] = {k: [] for k in calls}
    errors: Dict[str, str] = {}
    for r in range(warmup + repeats):
        order = [k for k in calls if k not in errors]
        rng.shuffle(order)
        for key in order:
            try:
                device_sync(device)
                t0 = clock()
                calls[key]()
                device_sync(device)
                dt = clock() - t0
            except Exception as e:  # a failing row is reported, not fatal
                errors[key] = f"{type(e).__name__}: {e}"[:300]
                continue
            if r >= warmup:
                times[key].append(dt)
            if tick is not None:
                tick()
    return times, errors


def peak_memory(calls: Dict[str, Callable[[], None]], device: torch.device) -> Dict[str, int]:
    """Peak CUDA memory of one call above what was allocated before it (bytes); CUDA only."""
    out = {}
    if device.type != "cuda":
        return out
    for key, call in calls.items():
        try:
            call()
            device_sync(device)
            torch.cuda.empty_cache()
            before = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
            call()
            device_sync(device)
            out[key] = int(torch.cuda.max_memory_allocated(device) - before)
        except Exception:
            continue
    return out


def network_step(dim: int, num_classes: int, batch: int, patch: Sequence[int], device: torch.device, amp: bool,
                 repeats: int = 2) -> Optional[float]:
    """Median seconds of one forward + backward of nnU-Net's default network for the problem (context for
    the loss times: what a training step costs besides the loss). The architecture is what nnU-Net's
    planner writes for this topology: PlainConvUNet, 32 * 2^i features (max 512 in 2D, 320 in 3D), two
    convolutions per stage, instance norm, leaky ReLU, deep supervision."""
    from dynamic_network_architectures.architectures.unet import PlainConvUNet
    pools, patch = topology(dim, patch)
    n = len(pools)
    conv, norm = (nn.Conv2d, nn.InstanceNorm2d) if dim == 2 else (nn.Conv3d, nn.InstanceNorm3d)
    net = PlainConvUNet(1, n, [min(32 * 2 ** i, 512 if dim == 2 else 320) for i in range(n)], conv, [[3] * dim] * n,
                        pools, [2] * n, num_classes, [2] * (n - 1), conv_bias=True, norm_op=norm,
                        norm_op_kwargs={"eps": 1e-5, "affine": True}, nonlin=nn.LeakyReLU,
                        nonlin_kwargs={"inplace": True}, deep_supervision=True).to(device)
    x = torch.randn((batch, 1, *patch), device=device)
    times = []
    for r in range(repeats + 1):
        device_sync(device)
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=amp_dtype(device), enabled=amp):
            out = net(x)
            value = sum(o.float().mean() for o in out)
        value.backward()
        device_sync(device)
        if r:
            times.append(time.perf_counter() - t0)
        net.zero_grad(set_to_none=True)
    del net, x, out
    return float(np.median(times))


def _quantile(xs: Sequence[float], q: float) -> float:
    return float(np.quantile(np.asarray(xs, dtype=np.float64), q)) if len(xs) else math.nan


def summarise(prob: Problem, variant: Variant, rows: Sequence[Row], times, errors, mem, device) -> dict:
    base_t = times[BASELINE]
    base_med = _quantile(base_t, 0.5)
    out_rows = []
    for key in [BASELINE] + [r.key for r in rows]:
        row = next((r for r in rows if r.key == key), None)
        t = times.get(key, [])
        med = _quantile(t, 0.5)
        n = min(len(t), len(base_t))
        paired = [a / b for a, b in zip(t[:n], base_t[:n])]
        ratio = med / base_med if t and base_t else math.nan
        entry = {"key": key, "loss": row.loss if row else "DC_and_CE_loss", "maps": row.maps if row else "-",
                 "times_s": [round(x, 6) for x in t], "median_s": med, "ratio": ratio,
                 "paired_ratio_q25": _quantile(paired, 0.25), "paired_ratio_q75": _quantile(paired, 0.75),
                 "target": row.target if row else None, "gpu_only_target": bool(row and row.gpu_only_target),
                 "error": errors.get(key)}
        if row and row.target is not None and not math.isnan(ratio):
            entry["status"] = "met" if ratio <= row.target else "missed"
        if key in mem:
            entry["peak_mem_bytes"] = mem[key]
            if BASELINE in mem and mem[BASELINE] > 0:
                entry["mem_ratio"] = mem[key] / mem[BASELINE]
        out_rows.append(entry)
    return {**prob.describe(), "variant": variant.name, "device": str(device), "rows": out_rows}


def run_problem(dim: int, num_classes: int, batch: int, patch: Sequence[int], device: torch.device,
                variants: Sequence[Variant], repeats: int, warmup: int, rows: Sequence[Row] = ROWS, seed: int = 0,
                tick=None) -> List[dict]:
    results = []
    for variant in variants:
        dtype = amp_dtype(device) if variant.amp else torch.float32
        prob = make_problem(dim, num_classes, batch, patch, device, dtype, seed)
        calls = build_calls(prob, rows, variant, device)
        w = warmup + (3 if variant.compiled else 0)
        times, errors = time_calls(calls, device, repeats, w, seed, tick)
        mem = peak_memory({k: v for k, v in calls.items() if k not in errors}, device)
        results.append(summarise(prob, variant, rows, times, errors, mem, device))
        del prob, calls
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return results
