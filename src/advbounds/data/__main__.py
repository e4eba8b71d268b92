"""``python -m advbounds.data fetch|prepare|synthetic NAME --data-dir DIR [options]``.

Examples::

    python -m advbounds.data fetch mnist --data-dir resources            # download + verify
    python -m advbounds.data fetch spambase --data-dir resources --offline  # verify a pre-staged file
    python -m advbounds.data prepare iris --data-dir resources --out results/data/iris.pt --seed 2017
    python -m advbounds.data synthetic cifar10 --data-dir resources/smoke --seed 2017

``fetch`` prints, per raw file, the file verified and the checksum it matched (``verified_by``:
``gz_md5``/``md5``, ``content_md5`` for an MNIST file verified by its decompressed content -- a
re-compressed ``.gz`` or torchvision's extracted ``*-ubyte`` -- ``synthetic_manifest``, or
``idx_structure`` for an allowed partial training file). Exit status 2 with the error's message
(which names the URL and path) when a file is missing offline or fails its checksum.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from advbounds.data.errors import DataError
from advbounds.data.fetch import fetch_raw
from advbounds.data.prepare import DEFAULT_UCI_SPLIT, STANDARDIZE_CHOICES, prepare_dataset
from advbounds.data.specs import DATASETS
from advbounds.data.synthetic import write_synthetic


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m advbounds.data",
        description="python -m advbounds.data fetch|prepare|synthetic NAME --data-dir DIR [options]: download or "
                    "verify the raw files of a dataset (fetch), prepare its tensors (prepare), or write small "
                    "synthetic stand-ins (synthetic).")
    parser.add_argument("command", choices=("fetch", "prepare", "synthetic"))
    parser.add_argument("name", choices=sorted(DATASETS))
    parser.add_argument("--data-dir", default="resources")
    parser.add_argument("--offline", action="store_true",
                        help="never download; a missing file is an error (pre-staged files are verified: an MNIST "
                             "file as the .gz or as torchvision's extracted *-ubyte file)")
    parser.add_argument("--synthetic", action="store_true", help="verify against the synthetic manifest")
    parser.add_argument("--allow-partial", action="store_true",
                        help="accept a shortened (under 60,000 samples) MNIST training set")
    parser.add_argument("--seed", type=int, default=2017)
    parser.add_argument("--out", help="prepare: output .pt file (default results/data/NAME.pt)")
    parser.add_argument("--split", type=float, nargs=3, metavar=("TRAIN", "TEST", "VAL"),
                        default=[DEFAULT_UCI_SPLIT[k] for k in ("train", "test", "val")])
    parser.add_argument("--image-val-fraction", type=float, default=0.0)
    parser.add_argument("--standardize", choices=STANDARDIZE_CHOICES, default="all")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "synthetic":
            for path in write_synthetic(args.name, args.data_dir, seed=args.seed):
                print(path)
        elif args.command == "fetch":
            print(json.dumps(fetch_raw(args.name, args.data_dir, args.offline, synthetic=args.synthetic,
                                       allow_partial=args.allow_partial), indent=2))
        else:
            meta = prepare_dataset(
                args.name, args.data_dir, args.out or f"results/data/{args.name}.pt", seed=args.seed,
                split=dict(zip(("train", "test", "val"), args.split)), offline=args.offline,
                synthetic=args.synthetic, allow_partial=args.allow_partial,
                image_val_fraction=args.image_val_fraction, standardize=args.standardize)
            print(json.dumps(meta["sizes"]))
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
