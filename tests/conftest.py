"""One seed per test run: CONFORMAL_SUPERRES_SEED if set, else fresh. It seeds numpy's and torch's global generators
before every test (for tests that draw from them) and is printed with each test's output, so that any failure can be
replayed with `CONFORMAL_SUPERRES_SEED=<seed> pytest tests/...`."""
import os
import numpy as np
import pytest
import torch

SEED = int(os.environ.get('CONFORMAL_SUPERRES_SEED', np.random.SeedSequence().entropy % 2**32))


def pytest_report_header(config):
    return f"CONFORMAL_SUPERRES_SEED={SEED}"


@pytest.fixture(autouse=True)
def _global_seed(request):
    s = (SEED + sum(map(ord, request.node.name))) % 2**32   # a stream per test, derived from the run's seed
    np.random.seed(s); torch.manual_seed(s)
    print(f"CONFORMAL_SUPERRES_SEED={SEED} (this test's global seed {s})")
    yield
