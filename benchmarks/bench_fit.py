"""How long ``joulefarm fit`` takes on a large results database.

Builds (once, cached in ``--workdir``) a synthetic database of about ``--rows`` layer rows:
the four synthetic devices of ``controller.estimators.synthetic``, each with single-layer
sweep models of every kind (``broad`` profile), multi-layer chains measured whole and the
reference set. Then runs ``joulefarm fit --target latency`` on it as a user would, with its
default validation (leave one family out, leave one device out), and prints the wall time of
each phase, of the fit on all the data (the estimator exported), and of the whole command.

    python benchmarks/bench_fit.py                 # 50,000 rows
    python benchmarks/bench_fit.py --rows 5000

The numbers are synthetic (a known generating function, flagged simulated): this measures
time, not accuracy.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import duckdb

from controller.estimators.export import fit_and_export
from controller.estimators.synthetic import DEVICES, build_synthetic_db
from joulefarm.tflite.sweep import ALL_KINDS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--workdir", type=Path, default=Path(os.environ.get(
        "TMPDIR", "/tmp")) / "joulefarm-bench-fit")
    parser.add_argument("--target", default="latency")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    db = args.workdir / f"synthetic-{args.rows}.duckdb"
    if not db.exists():
        started = time.time()
        n_chains = 24
        # Chains have ~10 layers each; the rest are single-layer sweep models.
        per_device = args.rows // len(DEVICES) - n_chains * 10
        build_synthetic_db(db.with_suffix(".part"), n_configs=max(per_device, 10),
                           n_chains=n_chains, profile="broad", kinds=ALL_KINDS)
        db.with_suffix(".part").rename(db)
        print(f"built {db} in {time.time() - started:.0f} s")
    with duckdb.connect(str(db), read_only=True) as con:
        row = con.execute("SELECT count(*) FROM layer_measurements").fetchone()
    rows = int(row[0]) if row else 0
    phases: list[tuple[float, str]] = []
    started = time.time()

    def progress(message: str) -> None:
        phases.append((time.time() - started, message))
        print(f"{time.time() - started:7.1f} s  {message}", flush=True)

    fit_and_export(db, args.target, args.workdir / "estimator", progress=progress)
    total = time.time() - started
    validating = next((t for t, m in phases if "validating" in m), total)
    fitting = validating - next((t for t, m in phases if "fitting on all data" in m), 0.0)
    print(f"fit on all {rows} layer rows (the estimator exported): {fitting:.1f} s; "
          f"validation: {total - validating:.1f} s")
    print(f"fit of {rows} layer rows ({args.target}, default validation): {total:.1f} s "
          f"on {os.cpu_count()} logical CPUs")


if __name__ == "__main__":
    main()
