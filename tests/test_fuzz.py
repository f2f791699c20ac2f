"""A seeded, bounded fuzz run of VideoReader (the engine is fastvid/bench/fuzz.py).

Every generated source (one per codec/container of test_reader.SPECS) and a few
light real files of ``../shared/videos`` (when that folder exists) are checked
clean against a sequential PyAV decode, then damaged in ``CASES`` seeded ways,
each case in its own process with a time limit. The promise: no crash, no hang,
no exception but VideoError, no frame lost or wrong. A failure prints each
case's reproduction spec; rerun one with

    python bench/fuzz.py --replay '<spec>'

The long run is ``python bench/fuzz.py --cases 2000``.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from test_reader import SPECS

from fastvid.bench import fuzz

SEED = 0
CASES = 80
JOBS = 2
TIMEOUT = 30.0
# real files that decode in a second or two: the long clips belong to bench/fuzz.py
REAL_LIGHT = ("h265_video.mp4", "tree.avi", "vidtest.ogv", "av1_video.mkv")


@pytest.fixture(scope="module")
def fuzz_run(tmp_path_factory) -> fuzz.FuzzRun:
    sources = fuzz.make_synth_sources(tmp_path_factory.mktemp("fuzz_sources"))
    sources += fuzz.real_sources(names=REAL_LIGHT)
    return fuzz.run_fuzz(sources, cases=CASES, seed=SEED, jobs=JOBS, timeout=TIMEOUT)


def _of_kind(results: list[fuzz.CaseResult], kind: str) -> list[fuzz.CaseResult]:
    if kind == fuzz.REAL and fuzz.shared_videos_dir() is None:
        pytest.skip("../shared/videos not present")
    return [r for r in results if r.case.source.kind == kind]


def _message(title: str, failing: list[fuzz.CaseResult]) -> str:
    lines = [f"{title}: {len(failing)} case(s); rerun one with python bench/fuzz.py --replay SPEC"]
    for r in failing:
        lines += fuzz.render_case(r, stderr=r.outcome in (fuzz.CRASH, fuzz.HANG))
    return "\n".join(lines)


# ---------------------------------------------------------------- the harness itself


def test_generated_sources_mirror_the_reader_suite():
    assert set(fuzz.SYNTH_SPECS) == set(SPECS)
    for name, (fname, kwargs, _offset) in SPECS.items():
        mine_name, mine = fuzz.SYNTH_SPECS[name]
        assert mine_name.rsplit(".", 1)[1] == fname.rsplit(".", 1)[1], name
        for key in ("codec", "bframes", "audio_first", "time_base"):
            assert mine.get(key) == kwargs.get(key), (name, key)
        assert mine["num_frames"] <= 72, name


@pytest.mark.parametrize("kind", fuzz.MUTATION_KINDS)
def test_mutations_are_seeded_json_and_change_the_file(kind):
    data = np.random.default_rng(1).integers(0, 256, 20_000, dtype=np.uint8).tobytes()
    first = fuzz.draw_mutation(kind, len(data), np.random.default_rng([3, 4]))
    again = fuzz.draw_mutation(kind, len(data), np.random.default_rng([3, 4]))
    assert first == again == json.loads(json.dumps(first))
    mutated = fuzz.apply_mutation(data, first)
    assert mutated != data
    assert fuzz.apply_mutation(data, first) == mutated
    if kind in ("zero", "flip", "drop", "duplicate"):
        assert data[:1000] == mutated[:1000]  # past the first 5%


def test_cases_cover_every_source_and_kind_and_reproduce():
    sources = [fuzz.Source(f"file:{k}", fuzz.repo_root() / "pyproject.toml") for k in range(5)]
    cases = fuzz.make_cases(sources, 30, seed=7)
    pairs = {(c.source.name, c.kind) for c in cases}
    assert len(pairs) == 30
    assert [c.spec() for c in cases] == [c.spec() for c in fuzz.make_cases(sources, 30, seed=7)]


def _record(ref: list[str], **kw) -> dict:
    rec = {"ref_digests": ref, "n": len(ref), "singles": [], "range": list(ref), "errors": []}
    rec.update(kw)
    return rec


def test_classify():
    ref = ["a", "b", "c", "d"]
    assert fuzz.classify(_record(ref, singles=[[2, "c"], [0, "a"]]))[0] == fuzz.OK
    outcome, detail = fuzz.classify(_record(ref, singles=[[2, "b"]]))
    assert outcome == fuzz.WRONG_FRAME and detail["wrong"][0]["looks_like_ref"] == 1
    assert fuzz.classify(_record(ref, range=["a", "b", "d", "c"]))[0] == fuzz.WRONG_FRAME
    assert fuzz.classify(_record(ref, n=3, range=ref[:3]))[0] == fuzz.FRAMES_LOST
    assert fuzz.classify(_record(ref, n=5, range=[*ref, "e"]))[0] == fuzz.COUNT_MISMATCH
    video_error = {
        "call": "open",
        "index": None,
        "type": "VideoError",
        "videoerror": True,
        "message": "x",
    }
    assert fuzz.classify(_record(ref, n=None, errors=[video_error]))[0] == fuzz.VIDEOERROR
    bug = dict(video_error, type="KeyError", videoerror=False, call="single", index=1)
    assert fuzz.classify(_record(ref, errors=[bug]))[0] == fuzz.OTHER_EXCEPTION
    # the reader revised its count from 5 to 4 on meeting damage: index 4 is now out of range
    shrunk = dict(bug, type="IndexError", index=4, count=4, legit_index_error=True)
    revised = _record(ref, n=5, n_after_singles=4, n_range=4, n_final=4, errors=[shrunk])
    outcome, detail = fuzz.classify(revised)
    assert outcome == fuzz.INDEX_ERROR and detail["counts"] == [5, 4]
    wrong_index = dict(shrunk, index=2, legit_index_error=False)
    assert fuzz.classify(_record(ref, errors=[wrong_index]))[0] == fuzz.OTHER_EXCEPTION
    assert fuzz.classify(_record(ref, n_final=3, range=ref[:3]))[0] == fuzz.FRAMES_LOST


# ---------------------------------------------------------------- the reader


def test_every_encodable_source_was_made(fuzz_run):
    made = {s.name for s in fuzz_run.sources if s.kind == fuzz.SYNTH}
    for name in ("h264_bframes_mp4", "mpeg4_avi", "mjpeg_avi", "raw_h264"):
        assert f"synth:{name}" in made


@pytest.mark.parametrize("kind", [fuzz.SYNTH, fuzz.REAL])
def test_clean_sources_equal_a_sequential_decode(fuzz_run, kind):
    results = _of_kind(fuzz_run.clean.results, kind)
    assert results
    failing = [r for r in results if r.outcome != fuzz.OK]
    if failing:
        pytest.fail(_message("clean sources that differ from the reference", failing), False)


@pytest.mark.parametrize("kind", [fuzz.SYNTH, fuzz.REAL])
def test_damaged_files_never_break_the_promise(fuzz_run, kind):
    results = _of_kind(fuzz_run.fuzz.results, kind)
    assert results
    failing = [r for r in results if r.failure]
    if failing:
        pytest.fail(_message("violations under mutation", failing), False)


@pytest.mark.parametrize("launcher", fuzz.LAUNCHERS)
def test_crashes_and_hangs_are_caught(tmp_path, launcher):
    def job(selftest: str) -> dict:
        return {
            "path": "-",
            "seed": 0,
            "singles": 1,
            "timeout": 2.0,
            "mem_limit_mb": 0,
            "result": str(tmp_path / f"{selftest}.json"),
            "stderr": str(tmp_path / f"{selftest}.stderr"),
            "selftest": selftest,
        }

    crash = job("crash")
    assert fuzz._launch(crash, 20.0, launcher) == -signal.SIGSEGV
    assert "Segmentation fault" in Path(crash["stderr"]).read_text()  # faulthandler's stack
    hang = job("hang")
    t0 = time.perf_counter()
    assert fuzz._launch(hang, 2.0, launcher) is None
    assert time.perf_counter() - t0 < 10
