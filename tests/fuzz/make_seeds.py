#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Writes the fuzz seed corpora: for each harness, inputs made by evloader's writers and, when the real
recordings are present, small pieces cut from them (never committed). `make fuzz` calls this; the committed
corpora under tests/fuzz/corpus are the writer-made part, regenerated with `--out tests/fuzz/corpus --no-real`."""
import argparse
import importlib.util
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, type=pathlib.Path)
    parser.add_argument("--real", type=pathlib.Path, default=None, help="folder of real recordings")
    parser.add_argument("--no-real", action="store_true")
    args = parser.parse_args()
    real = None if args.no_real or args.real is None or not args.real.is_dir() else args.real
    args.out.mkdir(parents=True, exist_ok=True)
    for seeder in sorted((HERE / "seeders").glob("*.py")):
        spec = importlib.util.spec_from_file_location(f"seeder_{seeder.stem}", seeder)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.make(args.out, real)
        print(f"seeds: {seeder.stem} done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
