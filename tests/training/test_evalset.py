"""The evaluation set builder: window choice, track choice, and a whole build from stand-in packages."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile

from engine.audio import Waveform
from engine.errors import ConfigError
from training.corpus import evalset
from training.corpus.packages import DEBIAN_PACKAGES

RATE = 22050


def _track(seconds: float, *, seed: int, quiet: tuple[float, float] | None = None, rate: int = RATE) -> np.ndarray:
    """Stereo "music": a beat of noise bursts over a chord, optionally with a stretch at -60 dBFS."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * rate)) / rate
    mono = 0.2 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.exp(-(t * 2 % 1) * 20) * rng.standard_normal(t.size)
    if quiet is not None:
        lo, hi = (round(s * rate) for s in quiet)
        mono[lo:hi] *= 0.002
    return np.stack([mono, 0.8 * mono], axis=1).astype(np.float32)


def test_evaluation_packages_are_never_training_sources():
    assert not set(evalset.EVAL_PACKAGES) & set(DEBIAN_PACKAGES)


def test_windows_skip_the_start_the_end_and_quiet_stretches():
    analysis = evalset._analyse(Waveform(_track(90, seed=1, quiet=(60, 63)), RATE))
    starts = analysis["starts"]
    assert starts and (analysis["sample_rate"], analysis["channels"]) == (RATE, 2)
    assert min(starts) >= evalset.SKIP_START_S and max(starts) + evalset.CLIP_S <= 90 - evalset.SKIP_END_S
    # No window may hold 2 s of the 3 s at about -70 dBFS; windows that only graze it are fine.
    overlaps = [min(start + evalset.CLIP_S, 63) - max(start, 60) for start in starts]
    assert max(overlaps) < evalset.QUIET_WINDOW_S and min(overlaps) < 0
    assert evalset._analyse(Waveform(_track(45, seed=1), RATE))["starts"] == []  # too short after the skips


def test_tracks_are_spread_before_any_second_clip():
    analyses = {"a": {"starts": [10, 60, 20]}, "b": {"starts": [30]}, "c": {"starts": [12, 30]},
                "d": {"starts": []}}
    assert sorted(o for o, _ in evalset._choose("pkg", analyses, 3)) == ["a", "b", "c"]
    chosen = evalset._choose("pkg", analyses, 10)
    # a gets a second clip 40 s or more from its first; c's second window overlaps its first, so c has one.
    assert chosen == [("a", 10), ("a", 60), ("b", 30), ("c", 12)]
    assert evalset._choose("pkg", analyses, 10) == chosen  # the shuffle is seeded


def test_variants_of_a_track_are_left_out(tmp_path):
    music = tmp_path / "music"
    music.mkdir()
    for name in ("celtic", "celtic_fast", "farm", "farm_f", "lone_fast"):
        (music / f"{name}.ogg").write_bytes(b"x")
    tracks = evalset.package_tracks("pkg", sorted(str(p) for p in music.iterdir()))
    assert sorted(p.rsplit("/", 1)[1] for p in tracks) == ["celtic.ogg", "farm.ogg", "lone_fast.ogg"]


def test_a_missing_package_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setattr(evalset, "dpkg_files", lambda package: [])
    with pytest.raises(ConfigError, match=r"sudo apt-get install wesnoth-1.16-music supertuxkart-data"):
        evalset.build_evalset(tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_build_from_stand_in_packages_is_complete_and_idempotent(tmp_path, monkeypatch):
    files = {}
    for package, tracks in (("pkg-a", {"one": 140, "two": 60}), ("pkg-b", {"three": 70, "short": 30})):
        folder = tmp_path / "pkgs" / package / "music"
        folder.mkdir(parents=True)
        for seed, (name, seconds) in enumerate(tracks.items()):
            soundfile.write(str(folder / f"{name}.flac"), _track(seconds, seed=seed), RATE)
        files[package] = sorted(str(p) for p in folder.iterdir())
        doc = tmp_path / "doc" / package
        doc.mkdir(parents=True)
        (doc / "copyright").write_text("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
                                       "Files: *\nCopyright: someone\nLicense: CC-BY-SA-4.0\n")
    monkeypatch.setattr(evalset, "EVAL_PACKAGES", ("pkg-a", "pkg-b"))
    monkeypatch.setattr(evalset, "DOC_ROOT", tmp_path / "doc")
    monkeypatch.setattr(evalset, "dpkg_files", lambda package: files[package])
    monkeypatch.setattr(evalset, "package_version", lambda package: "1.0-1")

    out = tmp_path / "evalset"
    manifest_path = evalset.build_evalset(out, clips_per_package=3)
    manifest = json.loads(manifest_path.read_text())
    clips = manifest["clips"]
    # pkg-a: one clip from each track, then a second from the 140 s one; pkg-b: its only long track once.
    assert [c["path"].rsplit("--", 1)[0] for c in clips] == ["pkg-a--one", "pkg-a--one", "pkg-a--two",
                                                             "pkg-b--three"]
    for clip in clips:
        info = soundfile.info(str(out / clip["path"]))
        assert (info.samplerate, info.channels, info.subtype) == (RATE, 2, "PCM_16")
        assert info.frames == round(evalset.CLIP_S * RATE)
        assert clip["path"].endswith(f"--{clip['start_s']:.0f}.flac")
        assert (clip["package_version"], clip["licence"], clip["seconds"]) == ("1.0-1", "CC-BY-SA-4.0", 40.0)
        assert clip["origin"] in files[clip["package"]]
        original, _ = soundfile.read(clip["origin"], dtype="float32")
        written, _ = soundfile.read(str(out / clip["path"]), dtype="float32")
        lo = round(clip["start_s"] * RATE)
        np.testing.assert_allclose(written, original[lo:lo + written.shape[0]], atol=1 / 32768 + 1e-6)
    assert (out / "licenses" / "pkg-a.copyright").read_text().endswith("License: CC-BY-SA-4.0\n")

    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    evalset.build_evalset(out, clips_per_package=3)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == stamps

    # Fewer clips asked for: the clip no longer chosen is removed.
    evalset.build_evalset(out, clips_per_package=1)
    assert len(list(out.glob("*.flac"))) == 2


def test_the_dev_set_is_cut_from_the_validation_songs_only(tmp_path):
    from training.corpus.devset import build_devset
    from training.corpus.split import DataConfig, list_audio_files, split_files

    corpus_dir = tmp_path / "corpus"
    corpus_dir.mkdir()
    for k in range(12):  # 12 songs: 8 train, 4 validation; one validation song may be too short
        seconds = 30.0 if k == 5 else 61.0
        soundfile.write(corpus_dir / f"song{k:02d}.flac", _track(seconds, seed=k, rate=8000), 8000)
    train, validation = split_files(list_audio_files(corpus_dir), DataConfig(files=0, seed=0))
    long_validation = [p for p in validation if soundfile.info(p).duration >= 60]

    clips = build_devset(corpus_dir, tmp_path / "dev", clips=60)
    assert len(clips) == len(long_validation) >= 3
    for clip in clips:
        audio, rate = soundfile.read(clip, dtype="float32")
        assert rate == 8000 and audio.shape == (40 * 8000, 2)
        source = next(p for p in validation if p.stem in clip.stem)
        original, _ = soundfile.read(source, dtype="float32")
        start = round(0.3 * (original.shape[0] - audio.shape[0]))
        np.testing.assert_allclose(audio, original[start:start + audio.shape[0]], atol=1e-4)
        assert all(p.stem not in clip.stem for p in train)
    assert build_devset(corpus_dir, tmp_path / "again", clips=2)[1].name == clips[1].name, "deterministic"
    with pytest.raises(ConfigError, match="clips"):
        build_devset(corpus_dir, tmp_path / "none", clips=0)
