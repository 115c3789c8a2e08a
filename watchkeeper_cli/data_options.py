"""The rows named by ``--csv`` or ``--rdataset`` (with ``--target``, ``--period``), else
the Ames sales: what ``train`` fits on and ``replay`` sends."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from watchkeeper_cli.failures import CommandFailed

if TYPE_CHECKING:  # pandas and the loaders: imported when a command runs
    from watchkeeper.dataset import Dataset


def load_data(args: argparse.Namespace, exclude: tuple[str, ...] = ()) -> Dataset:
    """The data named by --csv or --rdataset (with --target, --period), else Ames."""
    from watchkeeper.dataset import PackagedData, load_ames, load_csv, load_rdataset

    if (args.csv or args.rdataset) and not args.target:
        option = "--csv" if args.csv else "--rdataset"
        raise CommandFailed(f"--target is required with {option}", "name the target column")
    # without a dataset named these would be ignored: Ames has its own target and period
    if not (args.csv or args.rdataset) and (
        given := next((o for o in ("--target", "--period") if getattr(args, o[2:])), None)
    ):
        raise CommandFailed(
            f"{given} names a column of --csv or --rdataset, and neither was given",
            "add --csv FILE or --rdataset PACKAGE/NAME, or leave it out to use the Ames sales",
        )
    if args.csv:
        return load_csv(Path(args.csv), args.target, period=args.period, exclude=exclude)
    if args.rdataset:
        data = PackagedData.parse(args.rdataset)
        return load_rdataset(
            data.package, data.name, args.target, period=args.period, exclude=exclude
        )
    ames = load_ames()
    return replace(ames, exclude=(*ames.exclude, *exclude)) if exclude else ames
