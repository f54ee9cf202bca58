"""``memsim bench``: the simulator's speed, as ratios against plain references in one process.

Measures (VideoMem protocol, shipped parameters):

* a full-scale campaign simulated and written (wall seconds, peak memory);
* the trial kernel's trials per second on one thread and its speed-up on all
  threads (numba ``set_num_threads``);
* the kernel against its plain-Python agent-per-participant reference
  (:func:`memsim.sim.kernel.simulate_step_reference`, the same game draw for draw)
  on the same participants;
* sequence generation against its pure-Python reference.

Every timing follows a warm-up call, so numba's compilation (or cache load) is never counted:
the kernel's are medians of 7 rounds that time one thread and all threads in turn (into
outputs made once: fresh memory would time page faults, not the kernel), the others the best of
a few repeats.
"""

from __future__ import annotations

import os
import resource
import tempfile
import time

import numpy as np

from memsim.resources import params_path, protocol_path


def _best(fn, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _step1_input(protocol, params, n: int, seed: int = 0):
    """A VideoMem step-1 batch of ``n`` participants, built like the simulator builds it."""
    from memsim.sim.kernel import ROLE_CODES, StepInput
    from memsim.sim.population import draw_participants, draw_videos
    from memsim.sim.sequence import generate_sequences, layout_for

    step = protocol.steps[0]
    layout = layout_for(step)
    pid = np.arange(n, dtype=np.int64)
    item, lag = generate_sequences(layout, seed, pid, 0)
    rng = np.random.default_rng(seed)
    items_video = np.stack(
        [rng.choice(protocol.stimuli.count, layout.n_items, replace=False) for _ in range(n)]
    )
    video = np.take_along_axis(items_video, item, axis=1).astype(np.int32)
    group_role = np.array([ROLE_CODES[g.role] for g in step.items], dtype=np.int8)
    role = group_role[layout.group_of_item[item]]
    within = lag >= 0
    pos = np.arange(step.length)[None, :]
    parts = draw_participants(params, n, seed)
    x = StepInput(
        participant=pid,
        video=video,
        role=role,
        repeat=within,
        first_pos=np.where(within, pos - lag, -1).astype(np.int32),
        prior_onset=np.full(video.shape, np.nan),
        start_s=np.zeros(n),
        ability=parts.ability,
        fa=parts.fa,
        lapse=parts.lapse,
        careless=parts.careless,
    )
    return x, draw_videos(params, protocol.stimuli.count, seed)


def measure(quick: bool = False) -> dict:
    import numba

    from memsim.design.protocol import load_protocol
    from memsim.sim.kernel import outputs, simulate_step, simulate_step_reference
    from memsim.sim.params import load_params
    from memsim.sim.sequence import generate_sequences, generate_sequences_reference, layout_for
    from memsim.sim.simulate import _constants, simulate, write_simulation

    protocol = load_protocol(protocol_path("videomem"))
    params = load_params(params_path("videomem"))
    out: dict = {"threads": numba.get_num_threads(), "cpus": os.cpu_count()}
    scale = 0.1 if quick else 1.0

    # -- whole campaign, simulated and written
    simulate(protocol, params, seed=0, scale=0.02)  # warm-up: load the numba caches
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        sim = simulate(protocol, params, seed=1, scale=scale)
        t_sim = time.perf_counter() - t
        write_simulation(sim, tmp)
        t_all = time.perf_counter() - t
    out["campaign"] = {
        "scale": scale,
        "participants": int(sim.trials.participant.nunique()),
        "trials": int(len(sim.trials)),
        "simulate_s": t_sim,
        "simulate_and_write_s": t_all,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    del sim

    # -- the kernel: 1 thread, all threads, plain-Python reference
    n = 2_000 if quick else 20_000
    x, videos = _step1_input(protocol, params, n)
    c = _constants(protocol, params, 0, 0)
    trials = x.video.size
    # the kernel's own speed: into outputs made once (fresh memory would time page faults)
    buf = outputs(*x.video.shape)
    simulate_step(x, videos, c, out=buf)  # warm-up, and the outputs' pages touched
    before = numba.get_num_threads()
    # one thread and all threads in turn, 7 rounds: a drift of a shared machine hits both; the
    # medians, and the median of each round's ratio (the speed-up)
    one, alln, ratios = [], [], []
    try:
        for _ in range(7):
            numba.set_num_threads(1)
            one.append(_best(lambda: simulate_step(x, videos, c, out=buf), repeats=1))
            numba.set_num_threads(before)
            alln.append(_best(lambda: simulate_step(x, videos, c, out=buf), repeats=1))
            ratios.append(one[-1] / alln[-1])
    finally:
        numba.set_num_threads(before)
    t1, tn = float(np.median(one)), float(np.median(alln))
    n_ref = 50 if quick else 200
    sub = type(x)(
        **{k: (v[:n_ref] if isinstance(v, np.ndarray) else v) for k, v in x.__dict__.items()}
    )
    t_ref = _best(lambda: simulate_step_reference(sub, videos, c), repeats=1)
    numba.set_num_threads(1)
    try:
        sub_buf = outputs(*sub.video.shape)
        t_sub = _best(lambda: simulate_step(sub, videos, c, out=sub_buf))
    finally:
        numba.set_num_threads(before)
    out["kernel"] = {
        "participants": n,
        "trials": int(trials),
        "trials_per_s_1_thread": trials / t1,
        "trials_per_s_all_threads": trials / tn,
        "speedup_all_threads": float(np.median(ratios)),
        "reference_participants": n_ref,
        "reference_trials_per_s": sub.video.size / t_ref,
        "kernel_vs_reference": (t_ref / sub.video.size) / (t1 / trials),
        "kernel_vs_reference_same_batch": t_ref / t_sub,
    }

    # -- sequences: numba on one thread vs pure Python
    layout = layout_for(protocol.steps[0])
    pid = np.arange(20_000 if not quick else 2_000, dtype=np.int64)
    generate_sequences(layout, 0, pid[:10], 0)
    numba.set_num_threads(1)
    try:
        ts = _best(lambda: generate_sequences(layout, 0, pid, 0))
    finally:
        numba.set_num_threads(before)
    pref = pid[:300]
    tsr = _best(lambda: generate_sequences_reference(layout, 0, pref, 0), repeats=1)
    out["sequences"] = {
        "per_s_1_thread": pid.size / ts,
        "reference_per_s": pref.size / tsr,
        "ratio": (tsr / pref.size) / (ts / pid.size),
    }
    return out
