"""Throughput of ``advbounds.bounds.model_bounds`` (Algorithm 5.1) on a LeNet-5-sized model.

    python benchmarks/bench_bounds.py --n 10000 --device cpu --batch-size 1024

Random weights (the seeded Xavier initialisation of ``build_model``) and random raw-pixel inputs are
enough: the cost does not depend on the training. Prints samples per second of the full bound
(forward pass, every layer rule, the certified Jacobian spectral norm of the MLP tail).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

try:
    import advbounds  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from advbounds.bounds import JACOBIAN_NORM_METHODS, model_bounds  # noqa: E402
from advbounds.device import resolve_device  # noqa: E402
from advbounds.models import MODEL_REGISTRY, build_model  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="number of samples (default 10000)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (default auto)")
    parser.add_argument("--batch-size", type=int, default=None, help="samples per chunk (default: automatic)")
    parser.add_argument("--model", default="lenet5", choices=sorted(MODEL_REGISTRY), help="model (default lenet5)")
    parser.add_argument("--jacobian-norm", default="auto", choices=JACOBIAN_NORM_METHODS)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--repeat", type=int, default=1, help="timed repetitions (the best is reported)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    model = build_model(args.model, seed=args.seed).to(device).eval()
    channels, size = (3, 32) if args.model == "cifar_nin" else (1, 28)
    gen = torch.Generator().manual_seed(args.seed)
    x = (torch.rand(args.n, channels, size, size, generator=gen) * 255).to(device)

    model_bounds(model, x[: min(args.n, 64)], batch_size=args.batch_size, jacobian_norm=args.jacobian_norm)  # warm-up
    best = float("inf")
    for _ in range(max(1, args.repeat)):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        result = model_bounds(model, x, batch_size=args.batch_size, jacobian_norm=args.jacobian_norm)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    bound = result.bound.double()
    print(f"model={args.model} n={args.n} device={device} threads={torch.get_num_threads()} "
          f"batch_size={args.batch_size or 'auto'} jacobian_norm={args.jacobian_norm}")
    print(f"time {best:.2f} s  ->  {args.n / best:.1f} samples/s")
    print(f"bound: mean {bound.mean():.4g}, min {bound.min():.4g}, max {bound.max():.4g} (raw pixel units)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
