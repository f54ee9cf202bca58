"""Benchmark: writing a full VideoMem trial table as Parquet with each codec, against snappy.

    python benchmarks/bench_parquet.py [--repeats 5]

Simulates the main job's campaign (seed 0, full scale: ~2.2 million rows), converts it to an
Arrow table once, then writes it with each codec in turn (``--repeats`` rounds, the codecs
interleaved so that a drift of the machine hits them all), with the settings
:func:`memsim.sim.simulate.write_table` uses otherwise (dictionary for ``role`` only, no
statistics). Reports each codec's median seconds and file size, and both as ratios to snappy,
the codec ``write_table`` uses (pyarrow's default).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

CODECS = [
    ("snappy", None),
    ("lz4", None),
    ("zstd", 1),
    ("zstd", 3),
    ("gzip", 1),
    ("none", None),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    import pyarrow as pa
    import pyarrow.parquet as pq

    from memsim.design.protocol import load_protocol
    from memsim.resources import params_path, protocol_path
    from memsim.sim.params import load_params
    from memsim.sim.simulate import simulate

    sim = simulate(load_protocol(protocol_path("videomem")), load_params(params_path("videomem")))
    table = pa.Table.from_pandas(sim.trials, preserve_index=False)
    seconds: dict[tuple, list[float]] = {c: [] for c in CODECS}
    sizes: dict[tuple, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats + 1):  # the first round warms the file system cache
            for codec, level in CODECS:
                path = Path(tmp) / f"{codec}-{level}.parquet"
                t = time.perf_counter()
                pq.write_table(
                    table,
                    path,
                    compression=codec,
                    compression_level=level,
                    use_dictionary=["role"],
                    write_statistics=False,
                )
                if r:
                    seconds[(codec, level)].append(time.perf_counter() - t)
                sizes[(codec, level)] = path.stat().st_size
    ref_t = statistics.median(seconds[("snappy", None)])
    ref_s = sizes[("snappy", None)]
    print(f"{len(sim.trials):,} rows, median of {args.repeats} writes per codec")
    print(f"{'codec':<10} {'seconds':>8} {'MB':>7} {'time/snappy':>12} {'size/snappy':>12}")
    for c in CODECS:
        t = statistics.median(seconds[c])
        name = c[0] + (f"-{c[1]}" if c[1] is not None else "")
        ratios = f"{t / ref_t:12.2f} {sizes[c] / ref_s:12.2f}"
        print(f"{name:<10} {t:8.3f} {sizes[c] / 1e6:7.1f} {ratios}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
