"""Benchmark of the SinSR sampler: the batched shared-encoding sampler against the naive loop.

For each output size (square, M draws of one image, random weights of the full official
configuration) it reports samples per second of

- `batched`: `SinSR.sample` (encode once, one noise field per draw cropped per tile, all draws of a
  tile in one batch, autoencoder in chunks), and
- `naive`: `SinSR.sample_naive` (the official loop: per draw and per tile, encode, fresh noise,
  UNet, decode; draws in sequence),

measured in the same run on the same weights, with their ratio, and the peak memory:

- on CUDA, `torch.cuda.max_memory_allocated` of the timed run;
- everywhere, the peak of live tensor memory of the same call replayed on the meta device (no
  computation: every tensor an operation creates is counted until it is freed, plus the weights;
  attention is counted as a fused kernel stores it, i.e. its output only). This is what the
  caching allocator must at least hold; fragmentation and kernel workspaces come on top.

`--memory-only` skips the timing and prints the meta-device peaks, by default also for a 3840x2160
output (4K UHD) with M = 10, the bound the documentation states.

Examples (from the repository root):
    python bench/sinsr.py                               # CPU: 256x256 output, M=10, float32
    python bench/sinsr.py --sizes 256 2048 --device cuda --dtype bfloat16
    python bench/sinsr.py --memory-only --dtype bfloat16
"""
from __future__ import annotations
import argparse, contextlib, os, platform, resource, sys
import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the package of this checkout
import conformal_superres.sinsr as sinsr
from conformal_superres.sinsr import SinSR, ResShiftUNet, VQAutoencoder
from _measure import Measure  # bench/_measure.py (this script's folder)

class LiveTensorMeter(TorchDispatchMode):
    "Peak bytes of live tensors on one device, tracked operation by operation."
    def __init__(self, device='meta'):
        super().__init__()
        self.device, self.live, self.current, self.peak = torch.device(device), {}, 0, 0
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for k in [k for k, (ref, _) in self.live.items() if ref.expired()]:
            self.current -= self.live.pop(k)[1]
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.device == self.device:
                ref = StorageWeakRef(t.untyped_storage())
                if ref.cdata not in self.live:
                    n = t.untyped_storage().nbytes()
                    self.live[ref.cdata] = (ref, n); self.current += n
        self.peak = max(self.peak, self.current)
        return out

def _fused_attention(q, k, v, attn_mask=None, **kw):
    "Stand-in for SDPA while metering: a fused kernel keeps only its output."
    return q.new_empty(*q.shape[:-1], v.shape[-1])

@contextlib.contextmanager
def fused_attention_accounting():
    orig = sinsr.F.scaled_dot_product_attention
    sinsr.F.scaled_dot_product_attention = _fused_attention
    try: yield
    finally: sinsr.F.scaled_dot_product_attention = orig

def weight_bytes(sr:SinSR)->int:
    return sum(t.nbytes for net in (sr.unet, sr.autoencoder) for t in list(net.parameters()) + list(net.buffers()))

def meta_peak(h:int, w:int, m:int, dtype, naive:bool=False, **kw)->int:
    "Peak live bytes (weights included) of sampling m draws of one h x w low-res image, on the meta device."
    with torch.device('meta'): nets = ResShiftUNet().to(dtype=dtype), VQAutoencoder().to(dtype=dtype)
    sr = SinSR(*nets, **kw)
    lr = torch.rand(1, 3, h, w)
    with fused_attention_accounting(), LiveTensorMeter("meta") as meter:
        (sr.sample_naive if naive else sr.sample)(lr, m)
    return meter.peak + weight_bytes(sr)

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--sizes', type=int, nargs='+', default=[256], help='square output sizes (multiples of 4)')
    p.add_argument('--m', type=int, default=10, help='draws per image (M)')
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--dtype', default='float32', choices=['float32', 'bfloat16', 'float16'])
    p.add_argument('--max-batch', type=int, default=4)
    p.add_argument('--no-naive', action='store_true', help='time the batched sampler only')
    p.add_argument('--memory-only', action='store_true', help='meta-device memory peaks only (no timing)')
    p.add_argument('--no-4k', action='store_true', help='leave out the 3840x2160 memory figure')
    a = p.parse_args()
    dtype = getattr(torch, a.dtype)
    kw = dict(max_batch=a.max_batch)
    print(f"# SinSR sampler, M={a.m}, {a.dtype}, device {a.device}, torch {torch.__version__}, "
          f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, random weights (full configuration)")
    shapes = [(s, s) for s in a.sizes] + ([] if a.no_4k else [(2160, 3840)])
    if a.memory_only:
        print("\n| output | batched peak (meta) | naive peak (meta) |\n|---|---|---|")
        for H, W in shapes:
            b = meta_peak(H // 4, W // 4, a.m, dtype, **kw)
            n = '-' if a.no_naive else f"{meta_peak(H // 4, W // 4, a.m, dtype, naive=True, **kw) / 2**30:.2f} GiB"
            print(f"| {W}x{H} | {b / 2**30:.2f} GiB | {n} |", flush=True)
        return
    dev = torch.device(a.device)
    cuda = dev.type == 'cuda'
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    sr = SinSR.with_random_weights(seed=0, device=dev, dtype=dtype, **kw)
    print("\n| output | sampler | samples/s | seconds (wall) | CPU seconds | peak (CUDA) | peak (meta replay) |\n|---|---|---|---|---|---|---|")
    for s in a.sizes:
        lr = torch.rand(1, 3, s // 4, s // 4, generator=torch.Generator().manual_seed(s))
        rows = {}
        for name in (['batched'] if a.no_naive else ['batched', 'naive']):
            fn = sr.sample if name == 'batched' else sr.sample_naive
            fn(lr, min(a.m, a.max_batch), torch.Generator(dev).manual_seed(0))   # warm-up at the batch shapes timed below: kernels, autotuning, caches
            if cuda: torch.cuda.reset_peak_memory_stats(dev)
            with Measure(name, quiet=True, sync=sync, memory=False) as mt:   # memory: CUDA and meta-replay peaks below
                out = fn(lr, a.m, torch.Generator(dev).manual_seed(1))
            del out   # freed outside the timed block
            wall, cpu = mt.seconds, mt.cpu
            peak = f"{torch.cuda.max_memory_allocated(dev) / 2**30:.2f} GiB" if cuda else '-'
            meta = meta_peak(s // 4, s // 4, a.m, dtype, naive=(name == 'naive'), **kw)
            rows[name] = a.m / wall
            print(f"| {s}x{s} | {name} | {a.m / wall:.3f} | {wall:.1f} | {cpu:.1f} | {peak} | {meta / 2**30:.2f} GiB |", flush=True)
        if 'naive' in rows: print(f"| {s}x{s} | batched / naive | {rows['batched'] / rows['naive']:.2f}x | | | | |", flush=True)
    if not a.no_4k:
        print(f"\n3840x2160 output, M={a.m}, batched, meta replay peak: {meta_peak(540, 960, a.m, dtype, **kw) / 2**30:.2f} GiB")
    if not cuda: print(f"process max RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")

if __name__ == '__main__':
    main()
