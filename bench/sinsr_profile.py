"""Where SinSR's work goes: FLOPs per 256x256 output tile-sample of each network, and a torch profile of the sampler.

1. FLOP count (`torch.utils.flop_counter`, on the meta device: no computation, full official
   configuration): the UNet on one 64x64 latent tile, the encoder on one 256x256 image, the decoder
   on one 64x64 latent (quantisation included), split into convolutions, matrix products (linear
   layers, attention) and the rest. Then the decoder's cost per 256x256 of output when it decodes
   chunks of 64 to 512 latent pixels: its attention spans all latent pixels of a chunk, so its
   FLOPs per output pixel grow with the chunk side.
2. Profile (`torch.profiler`): one call of `SinSR.sample` with the full networks and random weights
   at a small size, the top operations by self time (CPU time on a CPU, CUDA time on a GPU).

Examples (from the repository root):
    OMP_NUM_THREADS=1 python bench/sinsr_profile.py                   # CPU: 256x256 output, M=1, fp32
    python bench/sinsr_profile.py --device cuda --size 2048 --m 4      # GPU: official precision
    python bench/sinsr_profile.py --flops-only
"""
from __future__ import annotations
import argparse, os, sys
from collections import defaultdict
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the package of this checkout
from conformal_superres.models.sinsr import SinSR, ResShiftUNet, VQAutoencoder, default_precision, PRECISIONS

KINDS = {'convolution': 'convolutions', 'addmm': 'matrix products', 'mm': 'matrix products', 'bmm': 'matrix products',
         'baddbmm': 'matrix products'}

def _kind(op)->str:
    name = str(op).split('.')[1] if '.' in str(op) else str(op)
    if 'attention' in name: return 'attention'
    return KINDS.get(name, 'other')

def count(fn)->tuple[int, dict]:
    "Total FLOPs of fn() and their split by kind of operation."
    with FlopCounterMode(display=False) as fc: fn()
    split = defaultdict(int)
    for op, n in fc.get_flop_counts()['Global'].items(): split[_kind(op)] += n
    return fc.get_total_flops(), dict(split)

def flop_table():
    with torch.device('meta'): unet, ae = ResShiftUNet(), VQAutoencoder()
    z, lq = torch.empty(1, 3, 64, 64, device='meta'), torch.empty(1, 3, 64, 64, device='meta')
    t = torch.full((1,), 14, device='meta')
    img = torch.empty(1, 3, 256, 256, device='meta')
    rows = [('UNet (64x64 latent)', lambda: unet(z, t, lq)), ('encoder (256x256 image)', lambda: ae.encode(img)),
            ('decoder (64x64 latent)', lambda: ae.decode(z))]
    print("## FLOPs per 256x256 output tile-sample (multiply-add = 2 FLOPs)\n")
    print("| network | GFLOP | convolutions | matrix products | attention | other |\n|---|---|---|---|---|---|")
    for name, fn in rows:
        total, split = count(fn)
        g = lambda k: f"{split.get(k, 0) / 1e9:.1f}"
        print(f"| {name} | {total / 1e9:.1f} | {g('convolutions')} | {g('matrix products')} | {g('attention')} | {g('other')} |")
    print("\n## Decoder FLOPs per 256x256 of output, by chunk side (the mid-level attention spans the chunk)\n")
    print("| chunk (latent px) | output px | GFLOP per 256x256 output | of which attention-type (matrix products + attention) |\n|---|---|---|---|")
    for side in (64, 128, 256, 512):
        zc = torch.empty(1, 3, side, side, device='meta')
        total, split = count(lambda: ae.decode(zc))
        per = (64 / side) ** 2
        att = split.get('matrix products', 0) + split.get('attention', 0)
        print(f"| {side} | {4 * side} | {total * per / 1e9:.0f} | {att * per / 1e9:.0f} |")

def profile(size:int, m:int, device, precision:str, top:int):
    dev = torch.device(device)
    sr = SinSR.with_random_weights(seed=0, device=dev, precision=precision)
    lr = torch.rand(1, 3, size // 4, size // 4, generator=torch.Generator().manual_seed(0))
    if dev.type == 'cuda': sr.sample(lr, m, torch.Generator(dev).manual_seed(0))   # warm-up: kernels, autotuning
    acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if dev.type == 'cuda' else [])
    with torch.profiler.profile(activities=acts) as prof:
        sr.sample(lr, m, torch.Generator(dev).manual_seed(1))
        if dev.type == 'cuda': torch.cuda.synchronize()
    key = 'self_cuda_time_total' if dev.type == 'cuda' else 'self_cpu_time_total'
    print(f"\n## Profile: {size}x{size} output, M={m}, precision {precision}, device {dev}, "
          f"{torch.get_num_threads()} CPU threads, top {top} operations by {key}\n")
    print(prof.key_averages().table(sort_by=key, row_limit=top, max_name_column_width=40))

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--size', type=int, default=256, help='square output size of the profiled call (multiple of 4)')
    p.add_argument('--m', type=int, default=1, help='draws in the profiled call')
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--precision', choices=list(PRECISIONS), default=None)
    p.add_argument('--top', type=int, default=15)
    p.add_argument('--flops-only', action='store_true')
    a = p.parse_args()
    flop_table()
    if not a.flops_only: profile(a.size, a.m, a.device, a.precision or default_precision(a.device), a.top)

if __name__ == '__main__':
    main()
