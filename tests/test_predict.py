"""Predictors: ridge and ceiling against plain references, and tiny end-to-end
cv / train / apply runs on generated data (seconds), errors as one line + exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from memsim.cli import main
from memsim.errors import UserError
from memsim.predict.ceiling import (
    beta_truth,
    ceilings_from_release,
    ceilings_from_truth,
    expected_spearman,
    spearman_rows,
)
from memsim.predict.features import FeaturePipeline, tokenize
from memsim.predict.ridge import Ridge

WORDS = ["owl", "tree", "cat", "sea", "city", "night", "dog", "car", "face", "sun", "snow", "man"]


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    # tests never need the pretrained embedding, and never touch the user's cache
    monkeypatch.setenv("MEMSIM_NO_EMBEDDING", "1")
    monkeypatch.setenv("MEMSIM_CACHE", str(tmp_path / "cache"))


def make_videomem(root: Path, n_lab: int = 80, n_unlab: int = 10, seed: int = 0) -> list[str]:
    """A miniature VideoMem release (BOM + CRLF ground truth) whose scores depend on the inputs."""
    rng = np.random.default_rng(seed)
    n = n_lab + n_unlab
    names = [f"video{i + 1}.webm" for i in range(n)]
    coco = rng.random((n, 80), dtype=np.float32) * 0.2
    titles, signal = [], np.zeros(n)
    for i in range(n):
        w = rng.choice(WORDS, size=3, replace=False)
        titles.append("-".join(w))
        signal[i] = ("owl" in w) - ("car" in w) + coco[i, 0] * 5
    st = np.clip(0.75 + 0.1 * signal + rng.normal(0, 0.02, n), 0.3, 1.0)
    lt = np.clip(0.65 + 0.1 * signal + rng.normal(0, 0.04, n), 0.2, 1.0)
    d = root / "videomem"
    d.mkdir(parents=True)
    lines = [
        "video,short-term_memorability,nb_short-term_annotations,long-term_memorability,"
        "nb_long-term_annotations"
    ]
    lines += [f"{names[i]},{st[i]:.3f},{30 + i % 7},{lt[i]:.3f},{9 + i % 5}" for i in range(n_lab)]
    (d / "ground-truth_dev-set.csv").write_bytes(
        b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n"
    )
    (d / "dev-set_video-captions.txt").write_text(
        "".join(f"{names[i]}\t{titles[i]}\r\n" for i in range(n - 3))
    )
    (d / "test-set_video-captions.txt").write_text(
        "".join(f"{names[i]}\t{titles[i]}\n" for i in range(n - 3, n))
    )
    (d / "coco80_ids.txt").write_text("\n".join(names) + "\n")
    np.save(d / "coco80_rn101.npy", coco)
    np.save(d / "coco80_rn152.npy", coco[:, ::-1].copy())
    return names


def make_memento(root: Path, n_lab: int = 60, n_dev: int = 6, seed: int = 1) -> list[str]:
    rng = np.random.default_rng(seed)
    d = root / "memento10k"
    d.mkdir(parents=True)
    rows, desc = [], []
    for i in range(n_lab + n_dev):
        w = rng.choice(WORDS, size=4, replace=False)
        ds = [f"a {w[0]} near a {w[j]}" for j in range(1, 4)] + [f"the {w[0]}", f"{w[1]} {w[2]}"]
        desc.append([str(i)] + ds)
        if i < n_lab:
            s = np.clip(0.8 + 0.1 * (("owl" in w) - ("car" in w)) + rng.normal(0, 0.02), 0, 1)
            rows.append(f"{i},http://u/{i}.mp4,90,{s:.4f},{s:.4f},-0.002")
    (d / "train_scores.csv").write_text(
        "video_id,video_url,annotations_short_term,scores_raw_short_term,"
        "scores_normalized_short_term,decay_alpha\n" + "\n".join(rows) + "\n"
    )
    head = "video_id," + ",".join(f"description_{j}" for j in range(5)) + "\n"
    (d / "train_text_descriptions.csv").write_text(
        head + "".join(",".join(r) + "\n" for r in desc[:n_lab])
    )
    (d / "dev_text_descriptions.csv").write_text(
        head + "".join(",".join(r) + "\n" for r in desc[n_lab:])
    )
    return [r[0] for r in desc]


FAST = ["--members", "2", "--epochs", "3", "--quiet", "--device", "cpu"]


# ----------------------------------------------------------------------------- units
def test_ridge_matches_closed_form_and_picks_a_grid_penalty():
    rng = np.random.default_rng(0)
    for n, p in [(120, 30), (30, 90)]:
        X = rng.normal(size=(n, p))
        Y = X[:, :3] @ rng.normal(size=(3, 2)) + rng.normal(size=(n, 2))
        m = Ridge.fit(X, Y, alphas=np.array([3.0]))
        Xc = X - X.mean(0)
        ref = np.linalg.solve(Xc.T @ Xc + 3.0 * np.eye(p), Xc.T @ (Y - Y.mean(0)))
        np.testing.assert_allclose(m.coef, ref, atol=1e-8)
        np.testing.assert_allclose(
            m.predict(X[:5]), (X[:5] - X.mean(0)) @ ref + Y.mean(0), atol=1e-8
        )
    m = Ridge.fit(X, Y)
    assert m.alpha.shape == (2,)
    back = Ridge.from_state(m.state())
    np.testing.assert_array_equal(back.predict(X), m.predict(X))


def test_spearman_rows_matches_scipy():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 5, size=(4, 30)).astype(float)  # ties on purpose
    b = rng.normal(size=(4, 30))
    ref = [spearmanr(a[i], b[i])[0] for i in range(4)]
    np.testing.assert_allclose(spearman_rows(a, b), ref, atol=1e-12)


def test_ceiling_matches_a_plain_loop_and_behaves_at_the_limits():
    p = np.random.default_rng(2).beta(8, 2, size=300)
    n = np.full(300, 20)
    got = expected_spearman(p, n, repeats=5, rng=np.random.default_rng(3))
    rng = np.random.default_rng(3)  # the same draws, one repeat at a time
    obs = rng.binomial(np.broadcast_to(n, (5, 300)), np.broadcast_to(p, (5, 300))) / n
    loop = [spearmanr(p, obs[r])[0] for r in range(5)]
    assert got[0] == pytest.approx(np.mean(loop), abs=1e-12)
    many = expected_spearman(p, np.full(300, 100_000), repeats=3, rng=np.random.default_rng(0))[0]
    few = expected_spearman(p, np.full(300, 3), repeats=3, rng=np.random.default_rng(0))[0]
    assert many > 0.99 and few < got[0] < many


def test_beta_truth_moments_and_release_ceilings():
    rng = np.random.default_rng(4)
    true = rng.beta(20, 4, size=4000)
    n = rng.integers(30, 40, size=4000)
    obs = rng.binomial(n, true) / n
    draws = beta_truth(obs, n, (3, 4000), np.random.default_rng(5))
    assert draws.mean() == pytest.approx(true.mean(), abs=0.005)
    assert draws.std() == pytest.approx(true.std(), rel=0.1)  # noise variance removed
    c = ceilings_from_release(obs, n, repeats=4, seed=0)
    exact = expected_spearman(true, n, repeats=4, rng=np.random.default_rng(6))[0]
    assert c["beta"][0] == pytest.approx(exact, abs=0.03)
    assert c["released_as_truth"][0] > c["beta"][0]
    with pytest.raises(UserError, match="no valid true variance"):
        beta_truth(np.full(50, 0.5) + np.linspace(-0.01, 0.01, 50), np.full(50, 10), (1, 50), rng)


def test_ceiling_from_truth_table():
    truth = pd.DataFrame(
        {"video": range(500), "true_short_term": np.random.default_rng(7).beta(9, 2, 500)}
    )
    m, sd = ceilings_from_truth(truth, np.full(50, 38), "short_term", repeats=3)
    assert 0.3 < m < 1 and sd >= 0
    with pytest.raises(UserError, match="missing column true_long_term"):
        ceilings_from_truth(truth, np.full(50, 13), "long_term")


def test_features_fit_on_training_rows_only():
    assert tokenize("Owl-in tree") == ["owl", "in", "tree", "owl_in", "in_tree"]
    texts = [["owl tree"], ["owl sea"], ["cat sea"], ["zebra zebra"], ["zebra"]]
    dense = np.random.default_rng(0).random((5, 4)).astype(np.float32)
    pipe = FeaturePipeline(use_embedding=False).fit(texts, dense, np.array([0, 1, 2]))
    assert "zebra" not in pipe.vocab  # only in rows outside the training set
    assert sorted(pipe.vocab) == ["owl", "sea"]  # df >= 2 within training rows
    f = pipe.transform(texts, dense)
    assert f.tfidf.shape == (5, 2) and f.tokens[3, 0] == 1  # unknown token id
    np.testing.assert_allclose(np.linalg.norm(f.tfidf[:3], axis=1), 1.0, rtol=1e-6)
    back = FeaturePipeline.from_state(pipe.state()).transform(texts, dense)
    np.testing.assert_array_equal(back.tfidf, f.tfidf)
    np.testing.assert_array_equal(back.dense, f.dense)


# ----------------------------------------------------------------------------- end to end
def test_cv_train_apply_videomem(tmp_path, capsys):
    names = make_videomem(tmp_path / "data")
    data = ["--data", str(tmp_path / "data")]
    rc = main(["predict", "cv", *data, "--folds", "2", "--out", str(tmp_path / "cv"), *FAST])
    out = capsys.readouterr().out
    assert rc == 0
    assert "| ridge-all (CV) |" in out and "| blend (CV) |" in out
    assert "SemEmb" in out and "ceiling: beta" in out
    summ = pd.read_csv(tmp_path / "cv" / "cv_summary.csv")
    assert set(summ["target"]) == {"short_term", "long_term"}
    blend = summ[(summ["model"] == "blend") & (summ["target"] == "short_term")]["mean"].iloc[0]
    assert blend > 0.3  # the generated scores follow the inputs; a working model finds that
    assert (tmp_path / "cv" / "cv.png").stat().st_size > 1000
    assert len(pd.read_csv(tmp_path / "cv" / "cv_folds.csv")) == 2 * 6 * 2

    model = tmp_path / "m.pt"
    assert main(["predict", "train", *data, "--out", str(model), *FAST]) == 0
    lst = tmp_path / "videos.txt"
    lst.write_text("\n".join(names[-5:]) + "\n")  # unlabelled ones, test-set titles included
    out_csv = tmp_path / "pred.csv"
    assert (
        main(
            [
                "predict",
                "apply",
                *data,
                "--model",
                str(model),
                "--videos",
                str(lst),
                "--out",
                str(out_csv),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    pred = pd.read_csv(out_csv)
    assert list(pred.columns) == ["video", "short-term_memorability", "long-term_memorability"]
    assert pred["video"].tolist() == names[-5:]
    assert pred.iloc[:, 1:].apply(lambda c: c.between(0, 1)).all().all()

    # same seed, same model: identical predictions
    model2 = tmp_path / "m2.pt"
    assert main(["predict", "train", *data, "--out", str(model2), *FAST]) == 0
    out2 = tmp_path / "pred2.csv"
    assert (
        main(
            [
                "predict",
                "apply",
                *data,
                "--model",
                str(model2),
                "--videos",
                str(lst),
                "--out",
                str(out2),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert out2.read_bytes() == out_csv.read_bytes()


def test_memento_text_only(tmp_path):
    ids = make_memento(tmp_path / "data")
    data = ["--data", str(tmp_path / "data"), "--dataset", "memento10k"]
    model = tmp_path / "mm.pt"
    assert main(["predict", "train", *data, "--out", str(model), *FAST]) == 0
    lst = tmp_path / "v.txt"
    lst.write_text("\n".join(ids[-3:]))
    out = tmp_path / "p.csv"
    assert (
        main(
            [
                "predict",
                "apply",
                "--data",
                str(tmp_path / "data"),
                "--model",
                str(model),
                "--videos",
                str(lst),
                "--out",
                str(out),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert list(pd.read_csv(out).columns) == ["video", "short-term_memorability"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    mp = pytest.MonkeyPatch()
    mp.setenv("MEMSIM_NO_EMBEDDING", "1")
    names = make_videomem(root / "data", n_lab=40, n_unlab=4)
    model = root / "m.pt"
    assert main(["predict", "train", "--data", str(root / "data"), "--out", str(model), *FAST]) == 0
    mp.undo()
    return root, names, model


def _err_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_apply_unknown_video(trained, tmp_path, capsys):
    root, names, model = trained
    lst = tmp_path / "v.txt"
    lst.write_text(f"{names[0]}\nvideo999999.webm\nnope.webm\n")
    out = tmp_path / "pred.csv"
    rc = main(
        [
            "predict",
            "apply",
            "--data",
            str(root / "data"),
            "--model",
            str(model),
            "--videos",
            str(lst),
            "--out",
            str(out),
        ]
    )
    assert rc == 2
    line = _err_line(capsys)
    assert "video999999.webm" in line and "and 1 more" in line
    assert not out.exists() and not list(tmp_path.glob(".pred.csv*"))


def test_apply_missing_or_corrupt_model(trained, tmp_path, capsys):
    root, names, _ = trained
    lst = tmp_path / "v.txt"
    lst.write_text(names[0] + "\n")
    out = tmp_path / "pred.csv"
    args = [
        "predict",
        "apply",
        "--data",
        str(root / "data"),
        "--videos",
        str(lst),
        "--out",
        str(out),
    ]
    assert main([*args, "--model", str(tmp_path / "none.pt")]) == 2
    assert "no such model file" in _err_line(capsys)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage" * 10)
    assert main([*args, "--model", str(bad)]) == 2
    assert "not a readable memsim model file" in _err_line(capsys)
    assert not out.exists()


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["predict", "cv", "--data", str(tmp_path / "absent"), "--quiet"]) == 2
    assert "data folder not found" in _err_line(capsys)


def test_predict_help_does_not_import_torch():
    code = (
        "import sys; from memsim.cli import build_parser; build_parser(); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    r = subprocess.run(
        [sys.executable, "-m", "memsim.cli", "predict", "cv", "--help"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0 and "--folds" in r.stdout


def test_ceiling_report_with_simulator_truth(tmp_path):
    from memsim.predict.ceiling import read_truth
    from memsim.predict.corpus import load_corpus
    from memsim.predict.report import ceilings

    make_videomem(tmp_path / "data")
    corpus = load_corpus("videomem", tmp_path / "data")
    rng = np.random.default_rng(8)
    pd.DataFrame(
        {
            "video": np.arange(200, dtype=np.int32),
            "true_short_term": rng.beta(9, 2, 200),
            "true_long_term": rng.beta(5, 2, 200),
        }
    ).to_parquet(tmp_path / "videos.parquet")
    truth = read_truth(tmp_path / "videos.parquet")
    c = ceilings(corpus, truth=truth, truth_source=tmp_path / "videos.parquet", repeats=3)
    sim = c[c["method"].str.startswith("simulator truth")]
    assert sorted(sim["target"]) == ["long_term", "short_term"]
    assert sim["mean"].between(0.2, 1).all()
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(UserError, match="cannot read truth file"):
        read_truth(tmp_path / "bad.parquet")


def test_the_help_gives_the_networks_real_epoch_default(capsys):
    pytest.importorskip("torch")
    from memsim.predict.models import NetConfig

    for sub in ("cv", "train"):
        try:
            assert main(["predict", sub, "--help"]) == 0
        except SystemExit as exc:  # argparse's own exit, where main lets it through
            assert exc.code == 0
        text = " ".join(capsys.readouterr().out.split())
        assert f"max epochs per member (default {NetConfig().max_epochs})" in text
        assert "(default 5, at least 2)" in text


def test_an_unknown_device_is_one_line():
    pytest.importorskip("torch")
    from memsim.predict.models import pick_device

    with pytest.raises(UserError, match="--device tpu: not a torch device"):
        pick_device("tpu")
    assert str(pick_device("cpu")) == "cpu"
