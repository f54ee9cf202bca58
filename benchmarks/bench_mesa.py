"""Benchmark: memsim against an agent-per-participant Mesa step loop playing the same campaign.

    pip install "memsim[bench]"        # Mesa: a benchmark-only dependency
    python benchmarks/bench_mesa.py [--repeats 3] [--small 0.1]

The reference (:class:`Campaign`, below) is the VideoMem campaign as one would write it in
Mesa: one agent per participant session, stepped once per presentation slot by the model's
step loop; arrivals (Poisson, 60 per hour), selection among the 1,000 least-annotated videos,
a lag-constrained sequence per participant (rejection placement), each presentation decided
in Python with the same model as memsim's kernel (forgetting law, short-term familiarity,
ability, false-alarm attraction, lapses, careless players, log-normal response times), step 2
24-72 h later for a third of the participants (40 of their step-1 fillers and 80 new videos),
and the trial table written as Parquet with pandas. Latent parameters come from the shipped
calibrated set through memsim's population draws (not part of the loop being timed).

Each command runs as a whole process at full scale and at ``--small`` scale, in turn, for
``--repeats`` rounds: the reference, ``memsim simulate`` (which writes Parquet) and ``memsim
run`` (simulate, score, every analysis, figures, Parquet). The marginal rate of each is
(trials at full scale - trials at the small scale) / (time at full scale - time at the small
scale): start-up (imports, numba's cache) cancels. Each round gives a rate per command and
memsim's over the reference's; reports the medians over rounds and every round's ratio (a
difference of two whole-process times is noisy on a shared machine). Timings are wall
seconds of whole processes.
"""

from __future__ import annotations

import argparse
import heapq
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- the Mesa reference
def _reference(scale: float, out: Path, seed: int = 0) -> int:
    import mesa
    import numpy as np
    import pandas as pd

    from memsim.design.protocol import load_protocol
    from memsim.design.trials import COLUMNS
    from memsim.sim.params import load_params
    from memsim.sim.population import draw_participants, draw_videos

    proto = load_protocol(REPO / "protocols" / "videomem.yaml")
    params = load_params(REPO / "calibration" / "videomem.yaml")
    n_videos = max(1000, round(10_000 * scale))
    n_people = max(1, round(10_150 * scale))
    pool = min(n_videos, max(120, round(1000 * n_videos / 10_000)))
    vids = draw_videos(params, n_videos, seed)
    people = draw_participants(params, n_people, seed)
    f, pp, rt = params.forgetting, params.participants, params.participants.rt
    tau = f.shape_values()[0]
    fam_decay = params.videos.short_term_decay_s
    st = proto.stimuli
    duration, gap = st.duration_s, st.gap_s
    hi_rt = duration * (1 - 1e-6)

    def sequence(rnd) -> tuple[list[int], list[int]]:
        """Slot -> item (0-39 targets, 40-59 vigilance, 60-119 fillers) and lag (-1: none)."""
        while True:
            item, lag = [-1] * 180, [-1] * 180
            ok = True
            for it, lo, hi in [(i, 45, 100) for i in range(40)] + [
                (i, 3, 6) for i in range(40, 60)
            ]:
                for _ in range(200):
                    d = rnd.randint(lo, hi)
                    p = rnd.randrange(180 - d)
                    if item[p] < 0 and item[p + d] < 0:
                        item[p] = item[p + d] = it
                        lag[p + d] = d
                        break
                else:
                    ok = False
                    break
            if ok:
                fillers = list(range(60, 120))
                rnd.shuffle(fillers)
                free = iter(fillers)
                return [x if x >= 0 else next(free) for x in item], lag

    class Session(mesa.Agent):
        """One participant's session of one step: one presentation per model step."""

        def __init__(self, model, pid, step, slots, start):
            super().__init__(model)
            self.pid, self.step_no, self.slots, self.t, self.k = pid, step, slots, start, 0
            self.onsets: dict[int, float] = {}  # video -> onset of its showing in her session

        def step(self) -> None:
            m, rnd = self.model, self.model.random
            video, role, repeat, prior, _ = self.slots[self.k]
            i = self.pid
            t_now = self.t
            delay = math.nan
            if repeat:
                delay = t_now - (prior if prior is not None else self.onsets[video])
            press, rt_s = False, math.nan
            u = rnd.random()
            if people.careless[i]:
                if u < pp.careless_press_rate:
                    press, rt_s = True, rt.min_s + rnd.random() * (hi_rt - rt.min_s)
            elif repeat:
                r = vids.m[video] * (1 - vids.rate[video] * (1 - math.exp(-delay / tau)))
                r = min(max(r, 1e-9), 1 - 1e-9)
                lp = math.log(r / (1 - r)) + people.ability[i]
                lp_fam = lp + vids.familiarity[video] * math.exp(-delay / fam_decay)
                if u < (1 - people.lapse[i]) / (1 + math.exp(-lp_fam)):
                    press = True
                    mu = rt.hit_log_mean - rt.hit_strength_slope * lp + vids.rt[video]
                    if self.step_no == 2:
                        mu += rt.later_step_log_shift
                    rt_s = min(max(rnd.lognormvariate(mu, rt.log_sd), rt.min_s), hi_rt)
            else:
                lp = people.fa[i] + vids.fa[video]
                if u < (1 - people.lapse[i]) / (1 + math.exp(-lp)):
                    press = True
                    mu = rt.false_alarm_log_mean
                    if self.step_no == 2:
                        mu += rt.later_step_false_alarm_log_shift
                    rt_s = min(max(rnd.lognormvariate(mu, rt.log_sd), rt.min_s), hi_rt)
            lag = self.slots[self.k][4]
            m.rows.append(
                (i, self.step_no, self.k, video, role, repeat, lag, delay, press, rt_s, t_now)
            )
            self.onsets[video] = t_now
            self.t = t_now + (rt_s if press else duration) + gap
            self.k += 1
            if self.k == len(self.slots):
                m.finished(self)
                self.remove()

    class Campaign(mesa.Model):
        """Arrivals, selection, returns; every session stepped once per presentation slot."""

        def __init__(self):
            super().__init__(seed=seed)
            self.rows: list[tuple] = []
            self.counts = np.zeros(n_videos)
            self.gen = np.random.default_rng(seed)
            gaps = self.gen.exponential(3600 / 60.0, n_people)
            self.arrivals = list(np.cumsum(gaps))
            self.next_p = 0
            self.returns: list[tuple] = []  # heap of (time back, participant, tested, ...)
            self.clock = 0.0
            self.tick = duration + gap

        def start(self, p: int, at: float) -> None:
            jitter = self.gen.random(n_videos) * 1e-3
            least = np.argpartition(self.counts + jitter, pool - 1)[:pool]
            chosen = [int(v) for v in self.gen.choice(least, 120, replace=False)]
            self.counts[chosen[:40]] += 1
            item, lag = sequence(self.random)
            roles = ["target"] * 40 + ["vigilance"] * 20 + ["filler"] * 60
            slots = [
                (chosen[it], roles[it], lag[k] >= 0, None, lag[k]) for k, it in enumerate(item)
            ]
            s = Session(self, p, 1, slots, at)
            s.chosen = chosen

        def finished(self, s: Session) -> None:
            if s.step_no == 1 and self.random.random() < pp.return_probability:
                back = s.t + self.random.uniform(24, 72) * 3600
                tested = self.random.sample(s.chosen[60:], 40)
                onsets = {v: s.onsets[v] for v in tested}
                heapq.heappush(self.returns, (back, s.pid, tested, onsets, s.chosen))

        def second(self, p: int, at: float, tested: list, onsets: dict, chosen: list) -> None:
            seen = set(chosen)
            new = []
            while len(new) < 80:
                v = self.random.randrange(n_videos)
                if v not in seen:
                    seen.add(v)
                    new.append(v)
            slots = [(v, "target", True, onsets[v], -1) for v in tested]
            slots += [(v, "filler", False, None, -1) for v in new]
            self.random.shuffle(slots)
            Session(self, p, 2, slots, at)

        def step(self) -> None:
            self.clock += self.tick
            while self.next_p < n_people and self.arrivals[self.next_p] <= self.clock:
                self.start(self.next_p, self.arrivals[self.next_p])
                self.next_p += 1
            while self.returns and self.returns[0][0] <= self.clock:
                back, p, tested, onsets, chosen = heapq.heappop(self.returns)
                self.second(p, back, tested, onsets, chosen)
            self.agents.do("step")

        def run(self) -> None:
            while self.next_p < n_people or self.returns or len(self.agents):
                self.step()

    model = Campaign()
    model.run()
    cols = list(COLUMNS)
    df = pd.DataFrame.from_records(model.rows, columns=cols)
    df = df.sort_values(["participant", "step", "position"], kind="stable")
    out.mkdir(parents=True, exist_ok=True)
    df.to_parquet(out / "trials.parquet", index=False)
    return len(df)


# --------------------------------------------------------------------------- timing
def _timed(cmd: list[str], out: Path) -> tuple[float, int]:
    import pyarrow.parquet as pq

    if out.exists():
        shutil.rmtree(out)
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=REPO)
    seconds = time.perf_counter() - t
    return seconds, pq.ParquetFile(out / "trials.parquet").metadata.num_rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--small", type=float, default=0.1, help="the small scale (default 0.1)")
    ap.add_argument("--reference", nargs=2, help=argparse.SUPPRESS)  # SCALE OUT: one Mesa run
    args = ap.parse_args()
    if args.reference:
        _reference(float(args.reference[0]), Path(args.reference[1]))
        return 0
    memsim = [sys.executable, "-m", "memsim"]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"

        def commands(scale: float) -> dict[str, list[str]]:
            s = str(scale)
            return {
                "Mesa step loop": [sys.executable, __file__, "--reference", s, str(out)],
                "memsim simulate": memsim
                + ["simulate", "protocols/videomem.yaml", "--out", str(out), "--scale", s]
                + ["--quiet"],
                "memsim run": memsim
                + ["run", "protocols/videomem.yaml", "--out", str(out), "--scale", s, "--quiet"],
            }

        got: dict[tuple[str, float], list[tuple[float, int]]] = {}
        for cmd in commands(args.small).values():  # warm-up: numba caches, file caches
            _timed(cmd, out)
        for _ in range(args.repeats):
            for scale in (1.0, args.small):
                for name, cmd in commands(scale).items():
                    got.setdefault((name, scale), []).append(_timed(cmd, out))
    names = ("Mesa step loop", "memsim simulate", "memsim run")
    # per round: each command's marginal rate from that round's pair of runs (a drift of the
    # machine between rounds cancels), and memsim's over the reference's in that round
    rates = {
        n: [
            (n1 - n0) / (t1 - t0) for (t1, n1), (t0, n0) in zip(got[(n, 1.0)], got[(n, args.small)])
        ]
        for n in names
    }
    print(
        f"whole processes, {args.repeats} rounds; marginal rate = extra trials / extra seconds "
        f"from scale {args.small} to 1, per round ({os.cpu_count()} CPUs)"
    )
    print(f"{'command':<18} {'s at 1':>8} {'s at small':>11} {'trials at 1':>12} {'marginal':>16}")
    for name in names:
        t1 = statistics.median(t for t, _ in got[(name, 1.0)])
        t0 = statistics.median(t for t, _ in got[(name, args.small)])
        r = statistics.median(rates[name])
        n1 = got[(name, 1.0)][0][1]
        print(f"{name:<18} {t1:8.2f} {t0:11.2f} {n1:12,} {r / 1e3:12,.0f} k/s")
    for name in names[1:]:
        ratio = sorted(a / b for a, b in zip(rates[name], rates["Mesa step loop"]))
        print(
            f"{name} / Mesa step loop (marginal rate): median {statistics.median(ratio):.1f}x "
            f"(rounds: {', '.join(f'{x:.1f}' for x in ratio)})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
