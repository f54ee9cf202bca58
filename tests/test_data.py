"""Loaders of the real releases: on the real files (skipped when absent) and on small
generated files that carry the releases' quirks (BOM, CRLF, leading-space URLs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from memsim import data as rd
from memsim.errors import UserError


# ----------------------------------------------------------------------------- real files
@pytest.mark.realdata
def test_real_videomem_matches_readme_facts(real_data):
    REAL = real_data
    s = rd.load_videomem_scores(REAL)
    assert list(s.columns) == rd.VIDEOMEM_SCORE_COLUMNS
    assert len(s) == 7000 and s["video"].is_unique
    assert s["video"].iloc[0] == "video10.webm"  # BOM stripped from the header, not glued to a name
    assert s["nb_short-term_annotations"].between(30, 100).all()
    assert s["nb_long-term_annotations"].between(9, 40).all()
    assert s["short-term_memorability"].mean() == pytest.approx(0.859, abs=0.001)
    # long-term scores are raw hit rates: score x annotations is (nearly) an integer
    hits = s["long-term_memorability"] * s["nb_long-term_annotations"]
    assert np.abs(hits - hits.round()).max() < 0.03
    caps = rd.load_videomem_captions(REAL)
    assert len(caps) == 10000 and (caps["split"] == "dev").sum() == 8000
    assert not caps["title"].str.contains("\r").any()
    assert set(s["video"]) <= set(caps["video"])
    ids, a, b = rd.load_coco80(REAL)
    assert a.shape == b.shape == (10000, 80) and a.dtype == np.float32
    assert set(caps["video"]) == set(ids)


@pytest.mark.realdata
def test_real_memento_and_trecvid(real_data):
    REAL = real_data
    m = rd.load_memento_scores(REAL)
    assert len(m) == 7000 and m["annotations_short_term"].min() >= 1
    d = rd.load_memento_descriptions(REAL, "train")
    assert set(d["video_id"]) == set(m["video_id"])
    assert len(rd.load_memento_descriptions(REAL, "dev")) == 1500
    dev = rd.load_trecvid_scores(REAL, "dev")
    assert dev["video_url"].str.startswith("https://").all()  # the leading space is gone
    tr = rd.load_trecvid_descriptions(REAL, "train")
    assert list(tr.columns) == ["video_id", "video_url", "description"]  # BOM not in the name
    assert tr["video_id"].nunique() == len(rd.load_trecvid_scores(REAL, "train"))


# ----------------------------------------------------------------------------- generated files
def _write(path: Path, text: str, *, bom: bool = False, crlf: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if crlf:
        text = text.replace("\n", "\r\n")
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())


GT = (
    "video,short-term_memorability,nb_short-term_annotations,long-term_memorability,"
    "nb_long-term_annotations\nvideo1.webm,0.900,34,0.800,10\nvideo2.webm,0.750,31,0.600,10\n"
)


@pytest.mark.parametrize("bom,crlf", [(True, True), (False, False), (True, False)])
def test_videomem_scores_bom_crlf(tmp_path, bom, crlf):
    _write(tmp_path / "videomem" / "ground-truth_dev-set.csv", GT, bom=bom, crlf=crlf)
    s = rd.load_videomem_scores(tmp_path)
    assert s["video"].tolist() == ["video1.webm", "video2.webm"]
    assert s["nb_long-term_annotations"].dtype == np.int64
    assert s["long-term_memorability"].tolist() == [0.8, 0.6]


@pytest.mark.parametrize(
    "text,needle",
    [
        (GT.replace("nb_long-term_annotations", "n_lt"), "missing column nb_long-term_annotations"),
        (GT.replace("0.750", "abc"), "not a number"),
        (GT.replace("0.750", "1.5"), "outside"),
        (GT.replace(",31,", ",31.5,"), "not an integer"),
        (GT + "video1.webm,0.5,30,0.5,9\n", "duplicate video"),
        ("", "empty"),
    ],
)
def test_videomem_scores_malformed(tmp_path, text, needle):
    _write(tmp_path / "videomem" / "ground-truth_dev-set.csv", text, bom=True, crlf=True)
    with pytest.raises(UserError, match=needle) as exc:
        rd.load_videomem_scores(tmp_path)
    assert "ground-truth_dev-set.csv" in str(exc.value) and "\n" not in str(exc.value)


def test_missing_file_and_data_dir(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="no such VideoMem scores file"):
        rd.load_videomem_scores(tmp_path)
    with pytest.raises(UserError, match="data folder not found"):
        rd.data_dir(tmp_path / "nowhere")
    monkeypatch.setenv("MEMSIM_DATA", str(tmp_path))
    assert rd.data_dir() == tmp_path
    monkeypatch.setenv("MEMSIM_DATA", str(tmp_path / "gone"))
    with pytest.raises(UserError, match="MEMSIM_DATA"):
        rd.data_dir()


def test_captions_and_coco(tmp_path):
    _write(
        tmp_path / "videomem" / "dev-set_video-captions.txt",
        'video1.webm\towl-in-tree\nvideo2.webm\tcat-on-"mat"\n',
        crlf=True,
    )
    _write(tmp_path / "videomem" / "test-set_video-captions.txt", "video3.webm\tsea\n")
    caps = rd.load_videomem_captions(tmp_path)
    assert caps["title"].tolist() == ["owl-in-tree", 'cat-on-"mat"', "sea"]
    assert caps["split"].tolist() == ["dev", "dev", "test"]
    _write(tmp_path / "videomem" / "coco80_ids.txt", "video1.webm\nvideo2.webm\nvideo3.webm\n")
    arr = np.random.default_rng(0).random((3, 80), dtype=np.float32)
    np.save(tmp_path / "videomem" / "coco80_rn101.npy", arr)
    np.save(tmp_path / "videomem" / "coco80_rn152.npy", arr[:, :79])
    with pytest.raises(UserError, match=r"coco80_rn152.npy: expected shape \(n, 80\)"):
        rd.load_coco80(tmp_path)
    np.save(tmp_path / "videomem" / "coco80_rn152.npy", arr[:2])
    with pytest.raises(UserError, match="2 rows but 3 names"):
        rd.load_coco80(tmp_path)
    (tmp_path / "videomem" / "coco80_rn152.npy").write_bytes(b"garbage")
    with pytest.raises(UserError, match="not a readable .npy"):
        rd.load_coco80(tmp_path)
    np.save(tmp_path / "videomem" / "coco80_rn152.npy", arr)
    ids, a, b = rd.load_coco80(tmp_path)
    assert ids.tolist() == ["video1.webm", "video2.webm", "video3.webm"]
    np.testing.assert_array_equal(a, b)


def test_trecvid_quirks(tmp_path):
    head = (
        "video_id,video_url,annotations_short_term,annotations_long_term,scores_raw_short_term,"
        "scores_raw_long_term,scores_normalized_short_term,decay_alpha\n"
    )
    _write(
        tmp_path / "trecvid2021" / "dev_scores.csv",
        head + "11, https://x/a.mp4,16,7,0.69,0.57,0.6875,0.0\n",
    )
    s = rd.load_trecvid_scores(tmp_path, "dev")
    assert s["video_url"].tolist() == ["https://x/a.mp4"]
    assert s["annotations_long_term"].tolist() == [7]
    _write(
        tmp_path / "trecvid2021" / "train_text_descriptions.csv",
        'video_id,video_url,description\n8,https://x/b.mp4,"a man, a stage"\n8,https://x/b.mp4,hug\n',
        bom=True,
        crlf=True,
    )
    d = rd.load_trecvid_descriptions(tmp_path, "train")
    assert d["description"].tolist() == ["a man, a stage", "hug"]
    assert d["video_id"].tolist() == [8, 8]


def test_memento_generated(tmp_path):
    _write(
        tmp_path / "memento10k" / "train_scores.csv",
        "video_id,video_url,annotations_short_term,scores_raw_short_term,"
        "scores_normalized_short_term,decay_alpha\n17,http://u,92,0.98,0.99,-0.0004\n",
    )
    assert rd.load_memento_scores(tmp_path)["video_id"].tolist() == [17]
    _write(
        tmp_path / "memento10k" / "dev_text_descriptions.csv",
        "video_id,description_0,description_1,description_2,description_3\n1,a,b,c,d\n",
    )
    with pytest.raises(UserError, match="missing column description_4"):
        rd.load_memento_descriptions(tmp_path, "dev")


def test_data_imports_without_torch():
    code = (
        "import sys, memsim.data; "
        "assert 'torch' not in sys.modules and 'matplotlib' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
