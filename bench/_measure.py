"""Measurement shared by the benchmarks: wall time, CPU time and (optionally) the rise of peak resident memory of a block."""
from __future__ import annotations
import time

def _status(key):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(key): return int(line.split()[1]) * 1024
    return 0

def _reset_peak():
    try:
        with open('/proc/self/clear_refs', 'w') as f: f.write('5')
        return True
    except OSError: return False

class Measure:
    """Wall time, CPU time (user + system of this process, all its threads) and rise of peak resident memory of a block.

    `sync` (e.g. `torch.cuda.synchronize`) is called before the clocks start and before they stop, so that work
    queued on a device is counted. `memory=False` leaves the memory alone: the peak is reset through
    /proc/self/clear_refs, which also lowers the max RSS that `resource.getrusage` reports afterwards."""
    def __init__(self, name:str, quiet:bool=False, sync=None, memory:bool=True):
        self.name, self.quiet, self.sync, self.memory = name, quiet, sync, memory
    def __enter__(self):
        self.ok = self.memory and _reset_peak(); self.rss0 = _status('VmRSS:') if self.memory else 0
        if self.sync is not None: self.sync()
        self.t0, self.c0 = time.perf_counter(), time.process_time()
        return self
    def __exit__(self, *exc):
        if self.sync is not None: self.sync()
        self.seconds, self.cpu = time.perf_counter() - self.t0, time.process_time() - self.c0
        self.peak = _status('VmHWM:') - self.rss0 if self.ok else float('nan')
        if not self.quiet:
            print(f"  {self.name}: wall {self.seconds:.2f} s, cpu {self.cpu:.2f} s, peak +{self.peak / 2**20:.0f} MiB", flush=True)
