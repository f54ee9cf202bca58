"""Top-up sessions after the VideoMem campaign: would they give the long-term minimum of 9?

The engines now do this: ``campaign.top_up`` (memsim/sim/topup.py; docs/protocols.md,
"campaign.top_up"), shipped on in protocols/videomem.yaml. This script is the prototype that
measured the idea first, kept runnable as a record of those measurements: it runs the shipped
protocol with the engine's top-up switched off (``campaign.top_up=null``) and then its own
rounds, whose draws differ from the engine's (a NumPy generator per round here; per-participant
counter-based streams there).

    python calibration/topup.py --seeds A-B [--targets least|uniform] [--min-batch N]
                                [--cap-rounds R] [--validate] [PATH=VALUE ...]

A prototype that measures an idea without changing the engines (docs/protocols.md,
"Annotation counts"). For each seed it simulates the shipped VideoMem campaign (changed by
dotted ``PATH=VALUE``), scores it, and then runs rounds of top-up participants until every
video has 9 kept long-term (LT) annotations or ``--cap-rounds`` rounds were run:

* the videos short of 9 kept LT annotations and their deficits are read off the union's
  scores (the same :func:`memsim.analysis.scoring.score` that scores the released logs);
* a round recruits ``ceil(largest deficit / q)`` new participants (``q``: kept step-2
  participants per step-1 start in the campaign), or more when the short videos need more
  filler places than 40 per participant (each short video is shown to ``ceil(deficit / q)``
  of them; at most 40 short ones each, so that step 2 can test them all), and at least
  ``--min-batch``;
* a top-up step 1 is the shipped step 1 (same layout, same sequences generator): its 60
  non-vigilance fillers are the short videos first (those needing most viewers first), the
  rest at random among the 1,000 videos with the fewest kept LT annotations; its 40 targets
  and 20 vigilance fillers at random among the 1,000 videos with the fewest kept short-term
  (ST) annotations per unit of the selection's demand (what the campaign's pick balances;
  ``--targets uniform``: among all videos);
* who completed step 1 returns with the calibrated return probability, 24-72 h later
  (uniform); step 2 tests 40 of the participant's step-1 fillers: the short ones first (the
  largest deficit first), then those with the fewest kept LT annotations; its 80 new fillers
  are drawn at random among the videos the participant did not see in step 1;
* the round's trial rows join the table and the union is scored again.

It prints, per seed: the campaign's LT minimum and short videos, the rounds and top-up
participants (started / kept in step 1 / kept in step 2), the LT and ST count statistics of
the union (KS against the released dev set's counts, minimum, 95th percentile), the videos
and annotations the top-up touched, and the union's kept participant totals beside the
paper's (9,402 kept in step 1, 3,246 in step 2); then the means over the seeds.
``--validate`` checks the last seed's union with :func:`memsim.design.trials.validate_trials`.

The top-up sessions are played on chosen stimuli by :func:`memsim.sim.simulate.play_step`,
the step player of :func:`memsim.sim.simulate.simulate_stepwise` (the tested kernels
``generate_sequences`` and ``simulate_step``).
Top-up participants are drawn by :func:`memsim.sim.population.draw_participants` after the
campaign's (ids from the campaign's budget on: the draw is prefix-stable), so their
sequences and responses have their own counter-based streams; the top-up's own choices
(who returns, delays, pool draws) come from a NumPy generator seeded by (seed, round): the
same seed gives the same result. It writes nothing.
"""

from __future__ import annotations

import argparse
import math

import numpy as np
from _script import protocol_changes, released_videomem, seed_range

from memsim.analysis.distributions import ks_distance
from memsim.analysis.scoring import count_column, score
from memsim.api import load_params, load_protocol
from memsim.design.trials import validate_trials
from memsim.sim.campaign import draw_demand
from memsim.sim.population import draw_participants
from memsim.sim.simulate import TRIAL_COLUMNS, play_step, prepare, simulate_arrays

ST, LT = "short-term_memorability", "long-term_memorability"
FLOOR = 9  # the paper: every video tested "at least 9 times" in step 2
POOL = 1000  # the campaign's pools (selection.pool, selection.later_pool)
TOPUP_TAG = 0x70B  # the top-up generator's stream tag, beside the seed and round


def play(prepared, params, seed, s, parts, videos, pid, start, items_video, prior):
    """Play step ``s`` for ``pid`` with the chosen items (:func:`memsim.sim.simulate.play_step`,
    the sessions of ``simulate_stepwise``).

    Returns ``(out, kept, rows)``: what the next step needs, the step's verdicts and the
    trial rows (SPEC columns, ``role`` as int8 codes)."""
    out, kept, rows, _ = play_step(
        prepared, params, seed, videos, parts, s, pid, start, items_video, prior
    )
    return out, kept, rows


def counts_of(res, n_videos: int) -> tuple[np.ndarray, np.ndarray]:
    """Kept ST and LT annotations per video (0 where none)."""
    sc = res.scores
    v = sc["video"].to_numpy()
    out = []
    for col in (ST, LT):
        c = np.zeros(n_videos, dtype=np.int64)
        c[v] = sc[count_column(col)].fillna(0).to_numpy().astype(np.int64)
        out.append(c)
    return out[0], out[1]


def groups(layout, step) -> dict[str, np.ndarray]:
    """Local item indices of each role group of a step."""
    return {g.role: np.flatnonzero(layout.group_of_item == gi) for gi, g in enumerate(step.items)}


def topup_round(
    prepared, params, seed, rnd, parts, videos, first_pid, t0, st, lt, st_demand, q, targets,
    min_batch,
):  # fmt: skip
    """One round of top-up participants; returns ``(rows, n, kept1, kept2, end)``."""
    protocol = prepared.protocol
    V = protocol.stimuli.count
    rng = np.random.default_rng([seed, TOPUP_TAG, rnd])
    short = np.flatnonzero(lt < FLOOR)
    deficit = FLOOR - lt[short]
    need = np.ceil(deficit / q).astype(np.int64)  # viewers each short video needs
    g1 = groups(prepared.layouts[0], protocol.steps[0])
    g2 = groups(prepared.layouts[1], protocol.steps[1])
    n_fill = g1["filler"].size
    n_short = g2["target"].size  # short fillers a returner's step 2 can all test
    n = int(max(need.max(), math.ceil(need.sum() / n_short), min_batch))
    pid = np.arange(first_pid, first_pid + n, dtype=np.int64)
    # step 1: the short videos as fillers, those needing most viewers first
    lt_pool = np.argsort(lt + rng.random(V), kind="stable")  # fewest kept LT tests, random ties
    st_pool = np.argsort(st / st_demand + 1e-6 * rng.random(V), kind="stable")
    items1 = np.empty((n, prepared.layouts[0].n_items), dtype=np.int32)
    left = need.copy()
    for i in range(n):
        order = np.lexsort((rng.random(short.size), -left))
        take = order[left[order] > 0][:n_short]
        left[take] -= 1
        fill = short[take]
        rest = lt_pool[:POOL][~np.isin(lt_pool[:POOL], fill)]
        fill = np.concatenate([fill, rng.choice(rest, n_fill - fill.size, replace=False)])
        pool = st_pool[:POOL] if targets == "least" else np.arange(V)
        pool = pool[~np.isin(pool, fill)]
        tv = rng.choice(pool, g1["target"].size + g1["vigilance"].size, replace=False)
        items1[i, g1["filler"]] = rng.permutation(fill)
        items1[i, g1["target"]] = tv[: g1["target"].size]
        items1[i, g1["vigilance"]] = tv[g1["target"].size :]
    start = t0 + np.cumsum(rng.exponential(3600.0 / protocol.campaign.arrivals.rate_per_h, n))
    out1, kept1, rows1 = play(
        prepared, params, seed, 0, parts, videos, pid, start, items1, np.full(items1.shape, np.nan)
    )
    # step 2: who completed step 1 and returns, 24-72 h later
    back = out1["complete"] & (rng.random(n) < params.participants.return_probability)
    lo, hi = protocol.steps[1].delay_h
    nb = int(back.sum())
    items2 = np.empty((nb, prepared.layouts[1].n_items), dtype=np.int32)
    prior2 = np.full(items2.shape, np.nan)
    key = np.zeros(V)  # order of step 2's tests: short (largest deficit) first, then fewest LT
    key[short] = -deficit
    key = key * (V + 1) + np.where(lt < FLOOR, 0, lt)
    for j, i in enumerate(np.flatnonzero(back)):
        local = g1["filler"]
        vids = items1[i, local]
        order = np.lexsort((rng.random(vids.size), key[vids]))[: g2["target"].size]
        items2[j, g2["target"]] = vids[order]
        prior2[j, g2["target"]] = out1["item_onset"][i, local[order]]
        unseen = np.ones(V, bool)
        unseen[items1[i]] = False
        items2[j, g2["filler"]] = rng.choice(
            np.flatnonzero(unseen), g2["filler"].size, replace=False
        )
    start2 = out1["end"][back] + rng.uniform(lo, hi, nb) * 3600.0
    out2, kept2, rows2 = play(
        prepared, params, seed, 1, parts, videos, pid[back], start2, items2, prior2
    )
    rows = {c: np.concatenate([rows1[c], rows2[c]]) for c in TRIAL_COLUMNS}
    end = float(max(out1["end"].max(), out2["end"].max() if nb else 0.0))
    return rows, n, int(kept1.sum()), int(kept2.sum()), end


def union(base: dict, extra: list[dict]) -> dict:
    """The campaign's trial columns and the top-up rows, in participant, step, position order."""
    cols = {c: np.concatenate([base[c], *(e[c] for e in extra)]) for c in TRIAL_COLUMNS}
    order = np.lexsort((cols["position"], cols["step"], cols["participant"]))
    return {c: a[order] for c, a in cols.items()}


def kept_participants(res) -> tuple[int, int]:
    ps = res.participants
    return tuple(int((ps["kept"] & (ps["step"] == s)).sum()) for s in (1, 2))


def run_seed(
    seed, protocol, params, real, cap_rounds, targets, min_batch=0, validate=False
) -> dict:
    prepared = prepare(protocol)
    arrays = simulate_arrays(prepared, params, seed)
    V = protocol.stimuli.count
    P = arrays.n_participants
    res = score(arrays.trials, protocol, validate=False)
    st0, lt0 = counts_of(res, V)
    k1_0, k2_0 = kept_participants(res)
    q = k2_0 / P  # kept step-2 participants per step-1 start
    demand = draw_demand(getattr(protocol.selection, "demand", None), V, seed, 0)
    st_demand = demand if demand is not None else np.ones(V)
    short0 = lt0 < FLOOR
    row = dict(
        seed=seed,
        starts=P,
        lt_min0=int(lt0.min()),
        short0=int(short0.sum()),
        deficit0=int((FLOOR - lt0[short0]).sum()),
        q=q,
    )
    extra, sizes, n_total, k1_t, k2_t, rounds = [], [], 0, 0, 0, 0
    st, lt = st0, lt0
    t0 = float(arrays.trials["onset_s"].max())
    first_pid = prepared.max_participants  # after every id the campaign could have drawn
    parts = None
    while (lt < FLOOR).any() and rounds < cap_rounds:
        # enough participants for this round: the draw is prefix-stable, so growing it keeps
        # the earlier rounds' participants as they were
        upto = first_pid + 100_000  # more than any round reaches
        if parts is None:
            parts = draw_participants(params, upto, seed)
        rows, n, k1, k2, t0 = topup_round(
            prepared, params, seed, rounds, parts, arrays.videos, first_pid, t0, st, lt,
            st_demand, q, targets, min_batch,
        )  # fmt: skip
        sizes.append(f"{n}/{k2}")
        extra.append(rows)
        first_pid += n
        n_total, k1_t, k2_t, rounds = n_total + n, k1_t + k1, k2_t + k2, rounds + 1
        res = score(union(arrays.trials, extra), protocol, validate=False)
        st, lt = counts_of(res, V)
    if validate:
        validate_trials(_frame(union(arrays.trials, extra)))
    k1_u, k2_u = kept_participants(res)
    r_st, r_lt = (real[count_column(c)].to_numpy() for c in (ST, LT))
    touched_lt = lt != lt0
    row.update(
        rounds=rounds,
        topup=n_total,
        topup_k1=k1_t,
        topup_k2=k2_t,
        lt_min=int(lt.min()),
        lt_short=int((lt < FLOOR).sum()),
        lt_ks0=ks_distance(lt0[lt0 > 0], r_lt),
        lt_ks=ks_distance(lt[lt > 0], r_lt),
        lt_p95=float(np.percentile(lt, 95)),
        lt_at9_0=100 * float((lt0 == FLOOR).mean()),
        lt_at9=100 * float((lt == FLOOR).mean()),
        st_ks0=ks_distance(st0[st0 > 0], r_st),
        st_ks=ks_distance(st[st > 0], r_st),
        st_min0=int(st0.min()),
        st_min=int(st.min()),
        st_p95_0=float(np.percentile(st0, 95)),
        st_p95=float(np.percentile(st, 95)),
        lt_videos=int(touched_lt.sum()),
        lt_added=int((lt - lt0).sum()),
        st_videos=int((st != st0).sum()),
        st_added=int((st - st0).sum()),
        kept1=k1_u,
        kept2=k2_u,
        kept1_0=k1_0,
        kept2_0=k2_0,
        sizes=" ".join(sizes),
    )
    return row


def _frame(cols: dict):
    import pandas as pd

    from memsim.design.trials import ROLES

    cols = dict(cols)
    cols["role"] = pd.Categorical.from_codes(cols["role"], categories=list(ROLES))
    return pd.DataFrame(cols)


HEAD = (
    "seed starts  q    | LT min short deficit | rounds topup k1 k2 | LT min KS0->KS  p95 | "
    "ST KS0->KS  min0->min p95_0->p95 | touched LT vids/ann ST vids/ann | kept1 kept2"
)


def line(r: dict) -> str:
    return (
        f"{r['seed']:4d} {r['starts']:6,d} {r['q']:.3f} | {r['lt_min0']:6d} {r['short0']:5d} "
        f"{r['deficit0']:7d} | {r['rounds']:6d} {r['topup']:5d} {r['topup_k1']:3d} "
        f"{r['topup_k2']:3d} | {r['lt_min']:6d} {r['lt_ks0']:.3f}->{r['lt_ks']:.3f} "
        f"{r['lt_p95']:3.0f} | {r['st_ks0']:.3f}->{r['st_ks']:.3f} {r['st_min0']:3d}->"
        f"{r['st_min']:3d} {r['st_p95_0']:3.0f}->{r['st_p95']:3.0f} | {r['lt_videos']:5d}/"
        f"{r['lt_added']:5d} {r['st_videos']:5d}/{r['st_added']:5d} | {r['kept1']:,} "
        f"{r['kept2']:,} (campaign {r['kept1_0']:,} {r['kept2_0']:,}) | rounds "
        f"(started/kept in step 2): {r['sizes']}"
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0-4", help="A-B: seeds A to B")
    ap.add_argument("--cap-rounds", type=int, default=10)
    ap.add_argument(
        "--targets", choices=("least", "uniform"), default="least", help="where the top-up's "
        "step-1 targets and vigilance fillers come from: the 1,000 videos with the fewest kept "
        "ST annotations per unit of demand, or any video",
    )  # fmt: skip
    ap.add_argument("--min-batch", type=int, default=0, help="recruit at least this many per round")
    ap.add_argument("--validate", action="store_true")
    ap.add_argument("--data", default=None)
    ap.add_argument("changes", nargs="*", help="dotted PATH=VALUE changes of the protocol")
    args = ap.parse_args(argv)
    real = released_videomem(args.data)
    if real is None:
        return 2
    protocol = load_protocol("videomem")
    # the engine's own top-up off: this script runs its own
    changes = {"campaign.top_up": None, **protocol_changes(args.changes)}
    if changes:
        protocol = protocol.updated(changes)
    params = load_params("videomem")
    seeds = seed_range(args.seeds)
    print(
        f"changes {changes or 'none'}; floor {FLOOR}, cap {args.cap_rounds} rounds, "
        f"targets {args.targets}, min batch {args.min_batch}"
    )
    print(HEAD)
    rows = []
    for seed in seeds:
        r = run_seed(
            seed, protocol, params, real, args.cap_rounds, args.targets, args.min_batch,
            args.validate and seed == seeds[-1],
        )  # fmt: skip
        rows.append(r)
        print(line(r), flush=True)
    if len(rows) > 1:
        m = {k: np.mean([r[k] for r in rows]) for k in rows[0] if k != "sizes"}

        def span(k):
            v = [r[k] for r in rows]
            return f"{min(v):g}-{max(v):g}"

        def within(k, tol=0.05):
            return f"{sum(r[k] <= tol for r in rows)}/{len(rows)}"

        print(
            f"{len(rows)} seeds (mean, range): rounds {m['rounds']:.1f} ({span('rounds')}), "
            f"top-up participants {m['topup']:.1f} ({span('topup')}; kept step 1 "
            f"{m['topup_k1']:.1f}, step 2 {m['topup_k2']:.1f} ({span('topup_k2')})); LT min "
            f"{m['lt_min0']:.2f} ({span('lt_min0')}) -> {m['lt_min']:.2f} ({span('lt_min')}), "
            f"9 on {sum(r['lt_min'] >= FLOOR for r in rows)}/{len(rows)}; LT KS {m['lt_ks0']:.3f}"
            f" ({within('lt_ks0')}) -> {m['lt_ks']:.3f} ({within('lt_ks')}), at 9 "
            f"{m['lt_at9_0']:.1f} -> {m['lt_at9']:.1f} % (released 6.3 %); ST KS "
            f"{m['st_ks0']:.3f} ({within('st_ks0')}) -> {m['st_ks']:.3f} ({within('st_ks')}), "
            f"min {m['st_min0']:.2f} -> {m['st_min']:.2f} ({span('st_min')}), 95th "
            f"{m['st_p95_0']:.1f} -> {m['st_p95']:.1f}; short videos {m['short0']:.1f} "
            f"({span('short0')}), deficit {m['deficit0']:.1f} annotations; touched LT "
            f"{m['lt_videos']:.1f} videos / {m['lt_added']:.1f} annotations, ST "
            f"{m['st_videos']:.1f} / {m['st_added']:.1f}; kept participants {m['kept1']:.0f} / "
            f"{m['kept2']:.0f} (campaign {m['kept1_0']:.0f} / {m['kept2_0']:.0f}; paper 9,402 / "
            f"3,246)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
