"""TFRecord export and tf.data reading: round trips that prove which frames came back."""

from __future__ import annotations

import json
import math
import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from fastvid.sampling import uniform_indices
from fastvid.synth import frame_index, make_video

tf = pytest.importorskip("tensorflow")

from fastvid import tfrecord  # noqa: E402
from fastvid.tfrecord import write as write_mod  # noqa: E402

CLASSES = ["down", "left", "right"]  # conftest's dataset_dir, sorted
FRAMES = 5


@pytest.fixture(scope="module")
def truth(dataset_dir: Path) -> dict[str, int]:
    """Frame count of every source video, counted by decoding all of it with PyAV."""
    import av

    counts = {}
    for path in sorted(dataset_dir.rglob("*.avi")):
        with av.open(str(path)) as container:
            counts[str(path)] = sum(1 for _ in container.decode(video=0))
    return counts


@pytest.fixture(scope="module")
def out_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("records")


_converted: dict[tuple, Path] = {}


def converted(src: Path, root: Path, **kwargs) -> Path:
    """Convert once per argument set (module-wide cache) and return the destination."""
    key = (str(src), tuple(sorted(kwargs.items())))
    if key not in _converted:
        dest = root / f"conv{len(_converted)}"
        kwargs.setdefault("frames", FRAMES)
        kwargs.setdefault("videos_per_record", 4)
        kwargs.setdefault("workers", 2)
        summary = tfrecord.convert(src, dest, progress=False, **kwargs)
        assert not summary.failed, summary
        _converted[key] = dest
    return _converted[key]


def read_all(dest: Path, **kwargs) -> list[tuple[np.ndarray, np.ndarray, dict]]:
    """Every example of ``dest`` as NumPy: (frames, one-hot, metadata)."""
    ds = tfrecord.dataset(dest, batch_size=None, shuffle=False, with_metadata=True, **kwargs)
    out = []
    for frames, label, meta in ds.as_numpy_iterator():
        meta = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in meta.items()}
        out.append((frames, label, meta))
    return out


def decoder_frames(path: str, indices, size, color: str) -> np.ndarray:
    """What the decoder gives for these frames: the reference for lossless encodings."""
    from fastvid.reader import VideoReader

    with VideoReader(path) as reader:
        return reader.get_frames(list(indices), size=size, color=color)


def check_examples(examples, truth, *, frames=FRAMES, size=None, channels=3) -> None:
    """Counts, labels, class names and (via the pixels) which frames every example holds."""
    paths = [meta["path"] for _, _, meta in examples]
    assert Counter(paths) == Counter(list(truth)), "every video exactly once"
    height, width = size or (48, 64)
    for pixels, label, meta in examples:
        path = meta["path"]
        cls = Path(path).parent.name
        assert meta["class_name"] == cls
        assert label.shape == (len(CLASSES),) and label.dtype == np.float32
        assert label.argmax() == CLASSES.index(cls) == meta["label"] and label.sum() == 1
        expected = uniform_indices(truth[path], frames)
        assert list(meta["frame_indices"]) == expected
        assert pixels.dtype == np.float32
        assert pixels.shape[:3] == (frames, height, width)
        assert pixels.shape[3] >= channels
        colour = pixels[..., :channels]
        assert 0.0 <= colour.min() and colour.max() <= 1.0
        assert [frame_index(f) for f in colour] == expected, path


ROUND_TRIPS = [
    # encoding, compression, flow, gray, size
    ("raw", "none", False, False, None),
    ("raw", "gzip", True, False, (72, 96)),
    ("png", "gzip", False, True, None),
    ("png", "none", True, True, None),
    ("jpeg", "none", False, False, (30, 40)),
    ("jpeg", "gzip", True, False, None),
]


@pytest.mark.parametrize(("encoding", "compression", "flow", "gray", "size"), ROUND_TRIPS)
def test_round_trip(dataset_dir, truth, out_root, encoding, compression, flow, gray, size):
    dest = converted(
        dataset_dir,
        out_root,
        encoding=encoding,
        compression=compression,
        flow=flow,
        gray=gray,
        size=size,
    )
    files = sorted(os.listdir(dest))
    records = [f for f in files if ".tfrecord" in f]
    assert len(records) == math.ceil(18 / 4)
    assert all(f.endswith(".gz") == (compression == "gzip") for f in records)
    assert not [f for f in files if f.endswith(".partial")]

    examples = read_all(dest)
    channels = 1 if gray else 3
    check_examples(examples, truth, size=size, channels=channels)
    for pixels, _, meta in examples:
        assert pixels.shape[-1] == channels + (2 if flow else 0)
        ref = (
            decoder_frames(
                meta["path"], meta["frame_indices"], size, "gray" if gray else "rgb"
            ).astype(np.float32)
            / 255
        )
        error = np.abs(pixels[..., :channels] - ref)
        if encoding == "jpeg":
            assert error.mean() < 6 / 255, (meta["path"], error.mean() * 255)
        else:
            np.testing.assert_allclose(pixels[..., :channels], ref, rtol=0, atol=1e-6)
    if flow:
        check_flow(examples, channels, size or (48, 64))
        # flow=False reads the same records without the flow channels
        plain = tfrecord.dataset(dest, batch_size=2, shuffle=False, flow=False).take(1)
        assert next(iter(plain))[0].shape[-1] == channels


def check_flow(examples, channels: int, size: tuple[int, int]) -> None:
    """On the moving square, the flow channels say how it moves: right, left or down."""
    sx, sy = size[1] / 64, size[0] / 48  # synth.MOTIONS are px/frame at 64x48 (h, w)
    expected = {"right": (2 * sx, 0), "left": (-2 * sx, 0), "down": (0, 1 * sy)}
    for pixels, _, meta in examples:
        bottom = pixels[:, pixels.shape[1] // 2 :]
        colour = bottom[..., :channels] * 255
        if channels == 3:  # the square is (250, 230, 60); the background has G = 90
            square = (colour[..., 0] > 200) & (colour[..., 1] > 180)
        else:
            square = colour[..., 0] > 180
        # per frame, then the median: the square jumps back when it wraps around
        per_frame = [
            f[..., -2:][m].mean(axis=0) for f, m in zip(bottom, square, strict=True) if m.any()
        ]
        assert len(per_frame) >= 3, meta["path"]
        got = np.median(per_frame, axis=0)
        want = np.array(expected[meta["class_name"]])
        axis = int(np.argmax(np.abs(want)))  # the direction of motion, and the other one
        # Farneback underestimates on tiny squares; direction and rough size are what count
        assert 0.5 * abs(want[axis]) < got[axis] * np.sign(want[axis]) < 1.5 * abs(want[axis]), (
            meta["path"],
            got,
            want,
        )
        assert abs(got[1 - axis]) < 0.25 * abs(want[axis]), (meta["path"], got, want)


def test_all_frames(dataset_dir, truth, out_root):
    dest = converted(dataset_dir, out_root, frames="all", encoding="jpeg", videos_per_record=6)
    assert tfrecord.inspect(dest).num_frames is None  # F varies: read unbatched
    examples = read_all(dest)
    assert Counter(m["path"] for _, _, m in examples) == Counter(list(truth))
    for pixels, _, meta in examples:
        everything = list(range(truth[meta["path"]]))
        assert list(meta["frame_indices"]) == everything
        assert [frame_index(f) for f in pixels] == everything


def test_distribute_strategy(dataset_dir, out_root):
    dest = converted(
        dataset_dir,
        out_root,
        encoding="jpeg",
        compression="none",
        flow=False,
        gray=False,
        size=(30, 40),
    )
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    dist = strategy.distribute_datasets_from_function(
        lambda ctx: tfrecord.dataset(dest, batch_size=6, input_context=ctx, seed=1)
    )
    sizes = [int(strategy.experimental_local_results(y)[0].shape[0]) for _, y in dist]
    assert sum(sizes) == 18


def seed_style_read(files, num_frames, height, width, depth, jpeg):
    """Read records the way video2tfrecord's own test does: blob/<i>, height, width, depth."""
    videos = []
    for raw in tf.data.TFRecordDataset(files):
        spec = {f"blob/{i}": tf.io.FixedLenFeature([], tf.string) for i in range(num_frames)}
        spec.update(
            height=tf.io.FixedLenFeature([], tf.int64),
            width=tf.io.FixedLenFeature([], tf.int64),
            depth=tf.io.FixedLenFeature([], tf.int64),
        )
        ex = tf.io.parse_single_example(raw, spec)
        assert (int(ex["height"]), int(ex["width"]), int(ex["depth"])) == (height, width, depth)
        images = []
        for i in range(num_frames):
            buf = ex[f"blob/{i}"]
            img = tf.io.decode_jpeg(buf, channels=3) if jpeg else tf.io.decode_raw(buf, tf.uint8)
            images.append(tf.reshape(img, [height, width, depth]).numpy())
        videos.append(np.stack(images))
    return videos


@pytest.mark.parametrize("flow", [False, True])
def test_video2tfrecord_layout(dataset_dir, truth, out_root, flow):
    dest = converted(
        dataset_dir, out_root, layout="video2tfrecord", flow=flow, compression="none", size=(32, 48)
    )
    spec = tfrecord.inspect(dest)
    assert spec.layout == "video2tfrecord"
    assert spec.encoding == ("raw" if flow else "jpeg")
    depth = 4 if flow else 3
    files = tfrecord.list_record_files(dest)
    videos = seed_style_read(files, FRAMES, 32, 48, depth, jpeg=not flow)
    assert len(videos) == 18
    # our reader reads the same files, labels and all
    examples = read_all(dest)
    check_examples(examples, truth, size=(32, 48))
    assert {e[0].shape[-1] for e in examples} == {depth}
    for pixels, _, meta in examples:  # colours right (RGB, not BGR), to JPEG precision
        ref = decoder_frames(meta["path"], meta["frame_indices"], (32, 48), "rgb") / 255
        assert np.abs(pixels[..., :3] - ref).mean() < 6 / 255, meta["path"]
    if flow:
        # the 4th channel (flow picture) is bright where the square moves, dark elsewhere
        assert all(v[..., 3].max() > 100 for v in videos)
        assert np.mean([v[..., 3].mean() for v in videos]) < 100


def test_convert_videos_to_tfrecord_signature(dataset_dir, truth, tmp_path):
    source = dataset_dir / "right"
    summary = tfrecord.convert_videos_to_tfrecord(
        str(source),
        str(tmp_path),
        4,
        3,
        "*.avi",
        dense_optical_flow=True,
        width=40,
        height=30,
        color_depth="uint8",
    )
    files = sorted(str(p) for p in tmp_path.glob("*.tfrecords"))
    assert len(files) == 2 and summary.converted == 6
    videos = seed_style_read(files, 3, 30, 40, 4, jpeg=False)
    ordered = sorted(str(p) for p in source.glob("*.avi"))
    for path, video in zip(ordered, videos, strict=True):
        assert [frame_index(f[..., :3]) for f in video] == uniform_indices(truth[path], 3)
    with pytest.raises(ValueError, match="uint8"):
        tfrecord.convert_videos_to_tfrecord(str(source), str(tmp_path), color_depth="uint16")


def test_convert_videos_to_tfrecord_seed_call_writes_flow(dataset_dir, truth, tmp_path):
    """The seed's call, convert_videos_to_tfrecord(source, destination, n_videos_in_record,
    n_frames_per_video, "*.avi"): video2tfrecord's default adds the flow as a 4th channel."""
    source = dataset_dir / "left"
    tfrecord.convert_videos_to_tfrecord(
        str(source), str(tmp_path), 6, 2, "*.avi", width=40, height=30
    )
    files = sorted(str(p) for p in tmp_path.glob("*.tfrecords"))
    videos = seed_style_read(files, 2, 30, 40, 4, jpeg=False)
    ordered = sorted(str(p) for p in source.glob("*.avi"))
    assert len(videos) == len(ordered)
    for path, video in zip(ordered, videos, strict=True):
        assert [frame_index(f[..., :3]) for f in video] == uniform_indices(truth[path], 2)


def example_set(examples) -> set:
    return {
        (m["path"], tuple(m["frame_indices"]), int(m["label"]), px.tobytes())
        for px, _, m in examples
    }


def test_two_shards_equal_one_conversion(dataset_dir, out_root, tmp_path):
    whole = converted(dataset_dir, out_root, encoding="raw", compression="none")
    for index in range(2):
        tfrecord.convert(
            dataset_dir,
            tmp_path,
            frames=FRAMES,
            encoding="raw",
            videos_per_record=4,
            num_shards=2,
            shard_index=index,
            progress=False,
        )
    names = sorted(p.name for p in tmp_path.glob("*.tfrecord"))
    shard0 = [n for n in names if "-00000-of-00002-" in n]
    shard1 = [n for n in names if "-00001-of-00002-" in n]
    assert shard0 and shard1 and len(shard0) + len(shard1) == len(names) == 6
    sharded = read_all(tmp_path)
    assert len(sharded) == 18
    assert example_set(sharded) == example_set(read_all(whole))

    # sharding by tf.distribute.InputContext: whole files (6 files, 2 pipelines) or
    # every n-th example (6 files, 8 pipelines); either way disjoint and complete
    for pipelines in (2, 8):
        seen = []
        for pid in range(pipelines):
            ctx = tf.distribute.InputContext(
                num_input_pipelines=pipelines, input_pipeline_id=pid, num_replicas_in_sync=1
            )
            ds = tfrecord.dataset(
                tmp_path,
                batch_size=None,
                shuffle=True,
                seed=3,
                input_context=ctx,
                with_metadata=True,
            )
            seen += [m["path"].decode() for _, _, m in ds.as_numpy_iterator()]
        assert sorted(seen) == sorted(m["path"] for _, _, m in sharded), pipelines


def test_another_shard_count_in_the_same_folder_is_refused_or_replaced(dataset_dir, tmp_path):
    args = dict(frames=3, encoding="raw", videos_per_record=6, progress=False)
    tfrecord.convert(dataset_dir, tmp_path, **args)
    with pytest.raises(ValueError, match="1 shard"):
        tfrecord.convert(dataset_dir, tmp_path, num_shards=2, shard_index=0, **args)
    for index in range(2):
        tfrecord.convert(
            dataset_dir, tmp_path, num_shards=2, shard_index=index, overwrite=True, **args
        )
    assert all("-of-00002" in p.name for p in tmp_path.iterdir()), sorted(tmp_path.iterdir())
    paths = [m["path"] for _, _, m in read_all(tmp_path)]
    assert len(paths) == 18 and len(set(paths)) == 18


def test_video2tfrecord_layout_with_varying_frame_counts_fails_loudly(tmp_path):
    for name, count in (("a", 10), ("b", 14)):
        make_video(tmp_path / "src" / "right" / f"{name}.avi", count, codec="mpeg4")
    dest = tmp_path / "records"
    tfrecord.convert(
        tmp_path / "src",
        dest,
        frames="all",
        layout="video2tfrecord",
        encoding="raw",
        progress=False,
    )
    with pytest.raises(tf.errors.InvalidArgumentError, match="different frame counts"):
        read_all(dest)


class Killed(BaseException):
    """Stands for the process being killed: not an ``Exception``, so nothing catches it."""


def test_kill_and_resume(dataset_dir, monkeypatch, tmp_path):
    real_extract = write_mod.extract
    calls = []

    def dying_extract(*args, **kwargs):
        calls.append(args[0].path)
        if len(calls) == 11:  # in the 3rd of 5 record files
            raise Killed
        return real_extract(*args, **kwargs)

    args = dict(
        frames=4, encoding="png", compression="gzip", videos_per_record=4, workers=2, progress=False
    )
    monkeypatch.setattr(write_mod, "extract", dying_extract)
    with pytest.raises(Killed):
        tfrecord.convert(dataset_dir, tmp_path, **args)
    monkeypatch.undo()
    finished = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*.tfrecord.gz")}
    assert 1 <= len(finished) < 5
    assert list(tmp_path.glob(".*.partial")), "the interrupted record stays a temporary file"

    summary = tfrecord.convert(dataset_dir, tmp_path, **args)
    assert summary.records_skipped == len(finished)
    assert summary.records_written == 5 - len(finished)
    assert summary.skipped == 4 * len(finished)
    assert summary.converted + summary.skipped == 18 and not summary.failed
    assert {p: p.stat().st_mtime_ns for p in finished} == finished, "finished files untouched"
    assert not list(tmp_path.glob(".*.partial"))
    paths = [m["path"] for _, _, m in read_all(tmp_path)]
    assert len(paths) == 18 and len(set(paths)) == 18

    # a third run has nothing to do; other arguments are refused, not mixed in
    again = tfrecord.convert(dataset_dir, tmp_path, **args)
    assert again.records_skipped == 5 and again.converted == 0 and again.skipped == 18
    # a finished record that went missing (deleted, or a crash before its rename) is redone
    lost = sorted(tmp_path.glob("*.tfrecord.gz"))[1]
    lost.unlink()
    redo = tfrecord.convert(dataset_dir, tmp_path, **args)
    assert redo.records_written == 1 and redo.records_skipped == 4 and lost.exists()
    paths = [m["path"] for _, _, m in read_all(tmp_path)]
    assert len(paths) == 18 and len(set(paths)) == 18
    with pytest.raises(ValueError, match="frames"):
        tfrecord.convert(dataset_dir, tmp_path, **{**args, "frames": 3})
    # overwrite with other arguments replaces the whole conversion, stale files included
    tfrecord.convert(dataset_dir, tmp_path, **{**args, "videos_per_record": 6}, overwrite=True)
    assert len(list(tmp_path.glob("*.tfrecord.gz"))) == 3
    paths = [m["path"] for _, _, m in read_all(tmp_path)]
    assert len(paths) == 18 and len(set(paths)) == 18


def test_bad_videos_are_reported_and_the_rest_converts(dataset_dir, tmp_path, capsys):
    src = tmp_path / "src"
    good = []
    for cls in CLASSES:
        (src / cls).mkdir(parents=True)
        for path in sorted((dataset_dir / cls).glob("*.avi"))[:2]:
            shutil.copy(path, src / cls / path.name)
            good.append(str(src / cls / path.name))
    (src / "right" / "broken.avi").write_bytes(np.random.default_rng(0).bytes(5000))
    (src / "left" / "empty.avi").write_bytes(b"")
    make_video(src / "down" / "short.avi", 3, codec="mpeg4")
    with open(dataset_dir / "down" / "down_000.avi", "rb") as fh:  # cut mid-stream
        (src / "down" / "truncated.avi").write_bytes(fh.read(600))

    dest = tmp_path / "out"
    rc = tfrecord.cli_main(
        [
            f"{src}/{{classname}}/*.avi",
            str(dest),
            "--frames",
            "5",
            "--videos-per-record",
            "3",
            "--no-progress",
            "--encoding",
            "png",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 1
    for name in ("broken.avi", "empty.avi", "short.avi", "truncated.avi"):
        assert f"failed: {src}" in out and name in out, out
    assert "too few frames" in out
    examples = read_all(dest)
    assert sorted(m["path"] for _, _, m in examples) == sorted(good)


def test_sources_csv_and_folder(dataset_dir, tmp_path):
    rows = ["path,label"] + [f"{p},{p.parent.name}" for p in sorted(dataset_dir.rglob("*.avi"))]
    csv_path = tmp_path / "list.csv"
    csv_path.write_text("\n".join(rows) + "\n")
    by_csv, classes = tfrecord.discover(csv_path)
    by_folder, folder_classes = tfrecord.discover(dataset_dir)
    by_glob, glob_classes = tfrecord.discover(f"{dataset_dir}/{{classname}}/*.avi")
    assert classes == folder_classes == glob_classes == CLASSES
    assert by_csv == by_folder == by_glob and len(by_csv) == 18
    assert all(s.class_name == Path(s.path).parent.name for s in by_csv)

    numeric = tmp_path / "numeric.csv"
    numeric.write_text("a.avi,2\nb.avi,0\n")
    sources, classes = tfrecord.discover(numeric)
    assert classes == ["0", "1", "2"]
    assert [(Path(s.path).name, s.label) for s in sources] == [("a.avi", 2), ("b.avi", 0)]


def test_cli_rejects_bad_arguments(tmp_path, capsys):
    for bad in (["--frames", "0"], ["--size", "12"], ["--compression", "zip"]):
        with pytest.raises(SystemExit) as exc:
            tfrecord.cli_main(["src", str(tmp_path), *bad])
        assert exc.value.code == 2
    assert tfrecord.cli_main([str(tmp_path / "missing"), str(tmp_path / "o")]) == 2
    assert "missing" in capsys.readouterr().err
    with pytest.raises(ValueError, match="raw"):
        tfrecord.convert(
            tmp_path, tmp_path / "o", layout="video2tfrecord", flow=True, encoding="jpeg"
        )


@pytest.mark.filterwarnings(
    "ignore:.*shuffle=True.*:UserWarning", "ignore:Your input ran out of data:UserWarning"
)
def test_model_fit(dataset_dir, out_root):
    import keras

    dest = converted(
        dataset_dir,
        out_root,
        encoding="jpeg",
        compression="none",
        flow=False,
        gray=False,
        size=(30, 40),
    )
    ds = tfrecord.dataset(dest, batch_size=4, seed=0)
    assert tuple(ds.element_spec[0].shape) == (None, FRAMES, 30, 40, 3)  # static: resized
    frames, labels = next(iter(ds))
    assert frames.shape[1:] == (FRAMES, 30, 40, 3) and labels.shape[1:] == (3,)
    model = keras.Sequential(
        [
            keras.Input((FRAMES, 30, 40, 3)),
            keras.layers.Conv3D(4, 3, strides=2, activation="relu"),
            keras.layers.GlobalAveragePooling3D(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(ds, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2
    assert all(np.isfinite(history.history["loss"]))


def _broken(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(seed).bytes(4000))
    return path


def test_a_record_whose_videos_all_fail_leaves_no_file_and_a_rerun_still_fails(
    dataset_dir, tmp_path, capsys
):
    src = tmp_path / "src"
    for k in range(3):
        _broken(src / "right" / f"broken_{k}.avi", seed=k)
    dest = tmp_path / "out"
    argv = [str(src), str(dest), "--frames", "4", "--videos-per-record", "2", "--no-progress"]
    assert tfrecord.cli_main(argv) == 1
    capsys.readouterr()
    assert not list(dest.glob("*.tfrecord*")), "no empty record file"
    manifest = json.loads(next(dest.glob("*.manifest.json")).read_text())
    assert [r["examples"] for r in manifest["records"].values()] == [0, 0]
    with pytest.raises(FileNotFoundError, match="no TFRecord file"):
        tfrecord.list_record_files(dest)

    # a rerun retries the failed videos, and reports them again while they fail
    assert tfrecord.cli_main(argv) == 1
    out = capsys.readouterr().out
    assert out.count("failed: ") == 3 and "broken_0.avi" in out, out
    assert not list(dest.glob("*.tfrecord*"))


def test_a_rerun_retries_failed_videos_and_reading_skips_empty_records(
    dataset_dir, tmp_path, capsys
):
    src = tmp_path / "src"
    good = sorted((dataset_dir / "right").glob("*.avi"))[:3]
    for path in good:
        (src / "right").mkdir(parents=True, exist_ok=True)
        shutil.copy(path, src / "right" / path.name)
    # sorted after the good ones: the 2nd record (videos 2, 3) half fails, the 3rd wholly
    late = [_broken(src / "right" / f"zz_late_{k}.avi", seed=k) for k in range(2)]
    dest = tmp_path / "out"
    argv = [
        str(src),
        str(dest),
        "--frames",
        "4",
        "--videos-per-record",
        "2",
        "--no-progress",
        "--encoding",
        "raw",
    ]
    assert tfrecord.cli_main(argv) == 1
    names = sorted(p.name for p in dest.glob("*.tfrecord"))
    assert len(names) == 2 and all(p.stat().st_size > 0 for p in dest.glob("*.tfrecord"))
    assert sorted(m["path"] for _, _, m in read_all(dest)) == sorted(
        str(src / "right" / p.name) for p in good
    )
    capsys.readouterr()

    # --no-retry-failed keeps the records and still says which videos failed: exit 1
    assert tfrecord.cli_main([*argv, "--no-retry-failed"]) == 1
    out = capsys.readouterr().out
    assert out.count("failed (earlier run): ") == 2, out
    assert "0 videos converted" in out

    # the late videos arrive whole (same paths): a plain rerun retries and takes them in
    for k, path in enumerate(late):
        shutil.copy(good[k], path)
    assert tfrecord.cli_main(argv) == 0
    out = capsys.readouterr().out
    assert ", 0 failed in" in out and "failed: " not in out and "failed (" not in out, out
    paths = sorted(m["path"] for _, _, m in read_all(dest))
    assert paths == sorted(str(p) for p in (src / "right").glob("*.avi")) and len(paths) == 5
    summary = tfrecord.convert(
        src, dest, frames=4, videos_per_record=2, encoding="raw", progress=False
    )
    assert summary.ok and summary.records_skipped == 3 and summary.converted == 0


def test_recursive_glob_of_record_files(dataset_dir, out_root, tmp_path):
    src = converted(
        dataset_dir,
        out_root,
        encoding="jpeg",
        compression="none",
        flow=False,
        gray=False,
        size=(40, 30),
    )
    nested = tmp_path / "records" / "train" / "part0"
    shutil.copytree(src, nested)
    pattern = f"{tmp_path}/records/**/*.tfrecord*"
    files = tfrecord.list_record_files(pattern)
    assert len(files) == len(tfrecord.list_record_files(src)) and all(
        f.startswith(str(nested)) for f in files
    )
    assert len(read_all(pattern)) == 18
    # a folder is still its own *.tfrecord* files only, not its sub-folders'
    with pytest.raises(FileNotFoundError):
        tfrecord.list_record_files(tmp_path / "records")
