"""Throughput of ``advbounds.verify.certified_radius`` (CROWN / IBP certified L2 radius).

    python benchmarks/bench_certify.py --n 1000 --device cpu --threads 2
    python benchmarks/bench_certify.py --n 10000 --device cuda --methods ibp crown-ibp crown

Models: LeNet-5 (``build_model('lenet5', seed=0)``, inputs [B, 1, 28, 28] uniform in [0, 255]) and
a 3x1024 ReLU MLP on 784 inputs (inputs uniform in [0, 1]). Random weights: the cost hardly
depends on training, but the radii of untrained models say nothing about real robustness.
Methods: ``ibp``; ``crown-ibp`` (CROWN margins, IBP intermediate bounds); ``crown`` (CROWN margins
and CROWN intermediate bounds for every nonlinear layer's input). Prints images/s (best of
``--repeat``), the median radius and the mean number of bound passes per image.
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

from advbounds.device import resolve_device  # noqa: E402
from advbounds.models import build_model  # noqa: E402
from advbounds.verify import certified_radius  # noqa: E402

METHODS = {"ibp": dict(method="ibp"), "crown-ibp": dict(method="crown", intermediate="ibp"),
           "crown": dict(method="crown", intermediate="crown")}


def _models(names, seed):
    out = {}
    if "lenet5" in names:
        out["lenet5"] = (build_model("lenet5", seed=seed), (1, 28, 28), 255.0)
    if "mlp3x1024" in names:
        out["mlp3x1024"] = (build_model("mlp", in_dim=784, hidden=[1024] * 3, n_classes=10, activation="relu",
                                        seed=seed), (784,), 1.0)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="number of images (default 1000)")
    parser.add_argument("--n-crown", type=int, default=None, help="images for the full 'crown' method "
                        "(default: --n; it is far slower on CPU)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (default auto)")
    parser.add_argument("--repeat", type=int, default=1, help="timed repetitions (the best is reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--models", nargs="+", default=["lenet5", "mlp3x1024"], choices=["lenet5", "mlp3x1024"])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--tol", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    dtype = getattr(torch, args.dtype)
    print(f"device={device} threads={torch.get_num_threads()} dtype={args.dtype} tol={args.tol}")
    print(f"{'model':<10} {'method':<10} {'n':>6} {'seconds':>9} {'images/s':>9} {'median radius':>14} "
          f"{'passes/img':>10}")
    for name, (model, shape, hi) in _models(args.models, args.seed).items():
        model = model.to(device).eval()
        gen = torch.Generator().manual_seed(args.seed)
        for method in args.methods:
            n = args.n_crown if (method == "crown" and args.n_crown) else args.n
            x = (torch.rand(n, *shape, generator=gen) * hi).to(device)
            best, res = float("inf"), None
            for _ in range(max(1, args.repeat)):
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                start = time.perf_counter()
                res = certified_radius(model, x, tol=args.tol, dtype=dtype, batch_size=args.batch_size,
                                       **METHODS[method])
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                best = min(best, time.perf_counter() - start)
            print(f"{name:<10} {method:<10} {n:>6} {best:>9.2f} {n / best:>9.2f} "
                  f"{res.radius.median().item():>14.6g} {res.iterations.double().mean().item():>10.1f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
