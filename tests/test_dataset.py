"""Dataset discovery, class names and splits (no video is decoded here)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fastvid import dataset


def touch(root: Path, *names: str) -> list[Path]:
    out = []
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
        out.append(path)
    return out


# --- class names from paths (the seed's find_classname tests, and more) ---


def test_class_as_dirname():
    assert dataset.classname_of("foo/bar/baz/zoo.avi", "foo/bar/{classname}/*.avi") == "baz"


def test_class_in_filename():
    assert dataset.classname_of("foo/bar/baz_0001.avi", "foo/bar/{classname}_*.avi") == "baz"


def test_class_for_windows_separators():
    pattern = "foo\\bar\\{classname}_*.avi"
    assert dataset.classname_of("foo\\bar\\baz_0001.avi", pattern) == "baz"
    assert dataset.classname_of("foo/bar/baz_0001.avi", pattern) == "baz"
    assert dataset.classname_of("C:\\data\\baz\\x.avi", "C:\\data\\{classname}\\*.avi") == "baz"


def test_class_with_dot_prefix():
    assert dataset.classname_of("foo/bar/baz_0001.avi", "./foo/bar/{classname}_*.avi") == "baz"
    assert dataset.classname_of("./foo//bar/baz_1.avi", "foo/bar/{classname}_*.avi") == "baz"


def test_regex_metacharacters_spaces_and_non_ascii_are_literal():
    base = "data (v1)+$^.{x}|a/vidéos à voir"
    pattern = base + "/{classname}/*.avi"
    assert dataset.classname_of(base + "/日本 語/clip (1).avi", pattern) == "日本 語"
    # "." in the pattern is not "any character"
    assert dataset.classname_of("data (v1)+$^X{x}|a/vidéos à voir/c/x.avi", pattern) is None


def test_no_match_gives_none_and_pattern_needs_classname():
    assert dataset.classname_of("other/baz/zoo.avi", "foo/{classname}/*.avi") is None
    assert dataset.classname_of("foo/baz/zoo.mp4", "foo/{classname}/*.avi") is None
    with pytest.raises(ValueError, match="classname"):
        dataset.classname_of("foo/x.avi", "foo/*.avi")


def test_glob_wildcards_keep_their_meaning():
    assert dataset.classname_of("v/a/x1.avi", "v/{classname}/x?.avi") == "a"
    assert dataset.classname_of("v/a/x12.avi", "v/{classname}/x?.avi") is None
    assert dataset.classname_of("v/a/x1.avi", "v/{classname}/x[0-9].avi") == "a"
    assert dataset.classname_of("v/a/xz.avi", "v/{classname}/x[!0-9].avi") == "a"
    assert dataset.classname_of("v/a/deep/er/x.avi", "v/{classname}/**/*.avi") == "a"
    assert dataset.classname_of("v/a/x.avi", "v/{classname}/**/*.avi") == "a"
    # "*" stays within one directory
    assert dataset.classname_of("v/a/b/x.avi", "v/{classname}/*.avi") is None


def test_known_classes_and_repeated_placeholder():
    # the shortest reading without classes, the longest known class with them
    assert dataset.classname_of("v/a_b_1.avi", "v/{classname}_*.avi") == "a"
    assert dataset.classname_of("v/a_b_1.avi", "v/{classname}_*.avi", ["a", "a_b"]) == "a_b"
    assert dataset.classname_of("v/c_1.avi", "v/{classname}_*.avi", ["a", "b"]) is None
    pattern = "v/{classname}/{classname}_*.avi"
    assert dataset.classname_of("v/run/run_3.avi", pattern) == "run"
    assert dataset.classname_of("v/run/walk_3.avi", pattern) is None


def test_absolute_path_against_relative_pattern(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "videos" / "jump" / "a.avi"
    assert dataset.classname_of(str(path), "./videos/{classname}/*.avi") == "jump"


# --- discovery on disk ---


def test_discover_classes_in_directories(tmp_path):
    touch(tmp_path, "v/b/1.avi", "v/a/1.avi", "v/a/2.avi", "v/c/x.mp4", "v/c/sub/3.avi")
    pattern = str(tmp_path / "v" / "{classname}" / "*.avi")
    assert dataset.discover_classes(pattern) == ["a", "b"]
    files = dataset.find_files(pattern)
    assert list(files) == ["a", "b"]
    assert [Path(p).name for p in files["a"]] == ["1.avi", "2.avi"]


def test_discover_classes_in_file_names(tmp_path):
    """The seed's test_find_classes: A/B/C x 10 files named {classname}_i."""
    for i in range(10):
        for cls in "ABC":
            touch(tmp_path, f"{cls}_{i}.ogv")
    pattern = os.path.join(str(tmp_path), "{classname}_*.ogv")
    files = dataset.find_files(pattern)
    assert sorted(files) == ["A", "B", "C"]
    assert sum(len(f) for f in files.values()) == 30


def test_discovery_with_awkward_names(tmp_path):
    root = tmp_path / "my data (v2)+$^ {x}"
    touch(root, "clé à molette/a b.avi", "日本/1.avi", "plain/1.avi")
    pattern = str(root / "{classname}" / "*.avi")
    assert dataset.discover_classes(pattern) == sorted(["clé à molette", "日本", "plain"])
    files = dataset.find_files(pattern, ["日本", "clé à molette"])
    assert list(files) == sorted(["clé à molette", "日本"])
    assert all(len(v) == 1 for v in files.values())


def test_windows_style_pattern_on_posix(tmp_path):
    touch(tmp_path, "v/a/1.avi", "v/b/2.avi")
    pattern = str(tmp_path).replace("/", "\\") + "\\v\\{classname}\\*.avi"
    if os.sep == "/":
        assert dataset.discover_classes(pattern) == ["a", "b"]


def test_class_names_with_glob_characters(tmp_path):
    touch(tmp_path, "v/a[1]/x.avi", "v/a1/y.avi")
    pattern = str(tmp_path / "v" / "{classname}" / "*.avi")
    files = dataset.find_files(pattern, ["a[1]", "a1"])
    assert [Path(p).name for p in files["a[1]"]] == ["x.avi"]
    assert [Path(p).name for p in files["a1"]] == ["y.avi"]


def test_each_file_belongs_to_one_class(tmp_path):
    touch(tmp_path, "a_1.avi", "a_b_1.avi", "a_b_2.avi")
    files = dataset.find_files(str(tmp_path / "{classname}_*.avi"), ["a", "a_b"])
    assert [Path(p).name for p in files["a"]] == ["a_1.avi"]
    assert [Path(p).name for p in files["a_b"]] == ["a_b_1.avi", "a_b_2.avi"]


def test_directories_are_not_files(tmp_path):
    touch(tmp_path, "v/a/1.avi")
    (tmp_path / "v" / "a" / "dir.avi").mkdir()
    files = dataset.find_files(str(tmp_path / "v" / "{classname}" / "*"))
    assert [Path(p).name for p in files["a"]] == ["1.avi"]


def test_unknown_class_is_empty(tmp_path):
    touch(tmp_path, "v/a/1.avi")
    assert dataset.find_files(str(tmp_path / "v/{classname}/*.avi"), ["a", "zz"])["zz"] == []


# --- splits ---


def thirty():
    return {c: [f"{c}_{i}.avi" for i in range(10)] for c in "ABC"}


def test_split_sizes_as_the_seed():
    split = dataset.split_files(thirty(), split_val=0.3, split_test=0.2, seed=0)
    assert split.sizes() == (18, 9, 3)
    for label, cls in enumerate("ABC"):  # per class: 3 validation, 1 test
        assert sum(1 for p, lab in split.validation if lab == label and p.startswith(cls)) == 3
        assert sum(1 for _, lab in split.test if lab == label) == 1
    everything = sorted(p for part in (split.train, split.validation, split.test) for p, _ in part)
    assert everything == sorted(p for files in thirty().values() for p in files)


def test_split_sizes_round_down_as_the_seed():
    # int(), not round(): 0.25 x 10 = 2.5 -> 2 validation, int(0.5 x 8) = 4 test, per class
    split = dataset.split_files(thirty(), split_val=0.25, split_test=0.5, seed=0)
    assert split.sizes() == (12, 6, 12)
    assert dataset.split_files(thirty(), split_val=0.19, seed=0).sizes() == (27, 3, 0)


def test_split_labels_follow_sorted_classes():
    split = dataset.split_files({"b": ["b1"], "a": ["a1"]}, seed=0)
    assert split.train == [("a1", 0), ("b1", 1)]


def test_split_is_reproducible_from_seed():
    one = dataset.split_files(thirty(), 0.3, 0.2, seed=7)
    assert one == dataset.split_files(thirty(), 0.3, 0.2, seed=7)
    assert one != dataset.split_files(thirty(), 0.3, 0.2, seed=8)


def test_split_of_a_class_does_not_depend_on_other_classes():
    files = thirty()
    one = dataset.split_files(files, 0.3, None, seed=3)
    files["D"] = [f"D_{i}.avi" for i in range(10)]
    two = dataset.split_files(files, 0.3, None, seed=3)
    assert [p for p, _ in one.validation] == [p for p, _ in two.validation if not p.startswith("D")]


def test_each_split_alone():
    """The seed split nothing unless both fractions were given; here each works alone."""
    assert dataset.split_files(thirty(), split_val=0.3, seed=0).sizes() == (21, 9, 0)
    assert dataset.split_files(thirty(), split_test=0.2, seed=0).sizes() == (24, 0, 6)
    assert dataset.split_files(thirty(), seed=0).sizes() == (30, 0, 0)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5])
def test_split_fraction_is_checked(bad):
    with pytest.raises(ValueError, match="split_val"):
        dataset.split_files(thirty(), split_val=bad)
