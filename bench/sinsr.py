"""Benchmark of the SinSR sampler: the batched shared-encoding sampler against the naive loop.

For each output size (square, M draws of one image, random weights of the full official
configuration, one precision) it reports samples per second of

- `batched`: `SinSR.sample` (encode once, one noise field per draw cropped per tile, the crops of
  all tiles and draws batched, autoencoder on whole 512-pixel tiles, on CUDA the decoder one group
  of draws behind the UNet on a second stream), and
- `naive`: `SinSR.sample_naive` (the official loop: per draw and per tile, encode, fresh noise,
  UNet, decode; draws in sequence, so its rate is timed on min(M, 3) draws),

measured in the same run on the same weights, with their ratio, and the peak memory:

- on CUDA, `torch.cuda.max_memory_allocated` of the timed batched run;
- everywhere, the peak of live tensor memory of the same call replayed on the meta device (no
  computation: every tensor an operation creates is counted until it is freed, plus the weights;
  attention is counted as a fused kernel stores it, i.e. its output only). This is what the
  caching allocator must at least hold; fragmentation, kernel workspaces and the decoder's overlap
  with the next group's UNet (the replay runs them one after the other) come on top.

and the work: the FLOPs of one batched sample (`torch.utils.flop_counter` on the same meta replay)
and, on a GPU whose dense half-precision tensor-core peak is known, the fraction of it reached.

`--out FILE` also writes the table as Markdown (what `bench/gpu_check.sh` commits as
`bench/results/sinsr_gpu.md`). `--memory-only` skips the timing and prints the meta-device peaks,
by default also for a 3840x2160 output (4K UHD) with M = 10.

Examples (from the repository root):
    python bench/sinsr.py                                   # CPU: 256x256 output, M=10, fp32
    python bench/sinsr.py --sizes 256 2048 --precision official --max-batch 8 --out bench/results/sinsr_gpu.md
    python bench/sinsr.py --memory-only --precision bf16
"""
from __future__ import annotations
import argparse, contextlib, os, platform, resource, sys
import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the package of this checkout
import conformal_superres.models.sinsr as sinsr
from conformal_superres.models.sinsr import SinSR, ResShiftUNet, VQAutoencoder, set_precision, PRECISIONS
from _measure import Measure  # bench/_measure.py (this script's folder)

# Dense (no sparsity) bf16/fp16 tensor-core peaks in TFLOP/s from the vendors' data sheets, by a
# substring of torch.cuda.get_device_name(); the first match wins.
PEAK_TFLOPS = [('H200', 989.4), ('H100 PCIe', 756.0), ('H100', 989.4), ('A100', 312.0), ('L40S', 362.1), ('L4', 121.0)]

def peak_tflops(name:str)->float|None:
    return next((v for k, v in PEAK_TFLOPS if k in name), None)

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

TINY = False   # --tiny: the tiny networks everywhere

def meta_sampler(precision:str, **kw)->SinSR:
    with torch.device('meta'):
        nets = set_precision(*((ResShiftUNet.tiny(), VQAutoencoder.tiny()) if TINY else (ResShiftUNet(), VQAutoencoder())), precision)
    return SinSR(*nets, **kw)

def meta_peak(h:int, w:int, m:int, precision:str, naive:bool=False, **kw)->int:
    "Peak live bytes (weights included) of sampling m draws of one h x w low-res image, on the meta device."
    sr = meta_sampler(precision, **kw)
    lr = torch.rand(1, 3, h, w)
    with fused_attention_accounting(), LiveTensorMeter("meta") as meter:
        (sr.sample_naive if naive else sr.sample)(lr, m)
    return meter.peak + weight_bytes(sr)

def meta_flops(h:int, w:int, m:int, precision:str, naive:bool=False, **kw)->int:
    "FLOPs (multiply-add = 2) of sampling m draws of one h x w low-res image, counted on the meta device."
    sr = meta_sampler(precision, **kw)
    with FlopCounterMode(display=False) as fc:
        (sr.sample_naive if naive else sr.sample)(torch.rand(1, 3, h, w), m)
    return fc.get_total_flops()

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--sizes', type=int, nargs='+', default=[256], help='square output sizes (multiples of 4)')
    p.add_argument('--m', type=int, default=10, help='draws per image (M)')
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--precision', choices=list(PRECISIONS), default=None, help="default: 'official' on CUDA, 'fp32' elsewhere")
    p.add_argument('--max-batch', type=int, default=4)
    p.add_argument('--ae-tile', type=int, default=512, help='autoencoder chunk in latent pixels (512: the original)')
    p.add_argument('--channels-last', action='store_true')
    p.add_argument('--compile', action='store_true', help='torch.compile the networks (warm-up compiles)')
    p.add_argument('--no-naive', action='store_true', help='time the batched sampler only')
    p.add_argument('--memory-only', action='store_true', help='meta-device memory peaks only (no timing)')
    p.add_argument('--no-4k', action='store_true', help='leave out the 3840x2160 memory figure')
    p.add_argument('--out', help='also write the table as Markdown to this file (appended if it exists)')
    p.add_argument('--tiny', action='store_true', help='the tiny test networks (a quick check of this script, not a benchmark)')
    a = p.parse_args()
    global TINY
    TINY = a.tiny
    dev = torch.device(a.device)
    cuda = dev.type == 'cuda'
    prec = a.precision or sinsr.default_precision(dev)
    kw = dict(max_batch=a.max_batch, ae_tile=a.ae_tile, ae_overlap=min(64, a.ae_tile // 8))
    gpu = torch.cuda.get_device_name(dev) if cuda else (platform.processor() or platform.machine())
    title = (f"# SinSR sampler, M={a.m}, precision {prec}, max_batch {a.max_batch}, ae_tile {a.ae_tile}"
             f"{', channels_last' if a.channels_last else ''}{', compiled' if a.compile else ''}, device {a.device} ({gpu}), "
             f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, random weights ({'TINY configuration, not a benchmark' if a.tiny else 'full configuration'})")
    print(title)
    shapes = [(s, s) for s in a.sizes] + ([] if a.no_4k else [(2160, 3840)])
    if a.memory_only:
        print("\n| output | batched peak (meta) | naive peak (meta) |\n|---|---|---|")
        for H, W in shapes:
            b = meta_peak(H // 4, W // 4, a.m, prec, **kw)
            n = '-' if a.no_naive else f"{meta_peak(H // 4, W // 4, a.m, prec, naive=True, **kw) / 2**30:.2f} GiB"
            print(f"| {W}x{H} | {b / 2**30:.2f} GiB | {n} |", flush=True)
        return
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    sr = SinSR.with_random_weights(tiny=a.tiny, seed=0, device=dev, precision=prec, channels_last=a.channels_last, compile=a.compile, **kw)
    peak = peak_tflops(gpu) if cuda else None
    head = ("| output | precision | batched samples/s | naive samples/s | batched / naive | CUDA peak (batched) | "
            "meta-replay bound (batched) | TFLOP per sample | TFLOP/s | fraction of bf16/fp16 peak | GPU |")
    lines = [head, '|' + '---|' * (head.count('|') - 1)]
    print('\n' + '\n'.join(lines), flush=True)
    def write(text):   # each row as soon as it is measured: a run stopped by its time limit keeps what it finished
        if not a.out: return
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        with open(a.out, 'a') as f: f.write(text)
    write(f"\n{title}\n\n" + '\n'.join(lines) + '\n')
    for s in a.sizes:
        lr = torch.rand(1, 3, s // 4, s // 4, generator=torch.Generator().manual_seed(s))
        rate, cuda_peak = {}, '-'
        for name in (['batched'] if a.no_naive else ['batched', 'naive']):
            fn = sr.sample if name == 'batched' else sr.sample_naive
            # the naive loop handles one draw after another, the same work per draw: 3 timed draws give its rate
            m = a.m if name == 'batched' else min(a.m, 3)
            fn(lr, min(m, a.max_batch) if name == 'batched' else 1, torch.Generator(dev).manual_seed(0))   # warm-up
            if name == 'batched' and a.m > a.max_batch and a.compile:   # compiled: every batch shape compiles once, so
                fn(lr, a.m, torch.Generator(dev).manual_seed(0))             # the tail batches are warmed up too
            if cuda: torch.cuda.reset_peak_memory_stats(dev)
            with Measure(name, quiet=True, sync=sync, memory=False) as mt:
                out = fn(lr, m, torch.Generator(dev).manual_seed(1))
            del out
            rate[name] = m / mt.seconds
            if cuda and name == 'batched': cuda_peak = f"{torch.cuda.max_memory_allocated(dev) / 2**30:.2f} GiB"
        bound = meta_peak(s // 4, s // 4, a.m, prec, **kw)
        flops = meta_flops(s // 4, s // 4, a.m, prec, **kw) / a.m
        tfs = flops * rate['batched'] / 1e12
        naive = f"{rate['naive']:.3f}" if 'naive' in rate else '-'
        ratio = f"{rate['batched'] / rate['naive']:.2f}x" if 'naive' in rate else '-'
        frac = f"{tfs / peak:.1%}" if peak else '-'
        row = (f"| {s}x{s} | {prec} | {rate['batched']:.3f} | {naive} | {ratio} | {cuda_peak} | {bound / 2**30:.2f} GiB | "
               f"{flops / 1e12:.2f} | {tfs:.1f} | {frac} | {gpu} |")
        lines.append(row); print(row, flush=True); write(row + '\n')
    if not cuda: print(f"process max RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")

if __name__ == '__main__':
    main()
