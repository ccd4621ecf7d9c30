"""The training corpus builder: one real render through the build's own path, the Debian checks, the demo."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
import soundfile

from engine.errors import ConfigError
from training.corpus import arrangement, build, jobs, packages, scores
from training.corpus.demo import render_demo_song
from training.corpus.ogg import OGG_SERIAL, write_ogg_vorbis

needs_fluidsynth = pytest.mark.skipif(shutil.which("fluidsynth") is None or not scores.SOUNDFONT.is_file(),
                                      reason="needs the fluidsynth binary and fluid-soundfont-gm "
                                             "(sudo apt-get install fluidsynth fluid-soundfont-gm)")


@pytest.fixture(scope="module")
def music21_root():
    pytest.importorskip("music21")
    return scores.music21_corpus()[1]


@needs_fluidsynth
def test_one_score_renders_deterministically_and_resumes(tmp_path, music21_root):
    builds = []
    for name in ("a", "b"):
        manifest_path = build.build_corpus(tmp_path / name, sources=("music21",), max_scores=1, workers=1)
        builds.append(json.loads(manifest_path.read_text()))
    manifest = builds[0]
    assert manifest["version"] == 1 and manifest["created_by"] == "training corpus"
    assert manifest["sample_rate"] == 22050
    assert "public domain" in manifest["sources"]["music21"]["copyright"]
    [item] = manifest["items"]
    assert item["source"] == "music21" and item["licence"] == "public-domain"
    assert item["path"] == f"audio/music21/{item['origin'].rsplit('.', 1)[0].replace('/', '-')}.flac"
    assert item["instruments"] and arrangement.QPM_RANGE[0] <= item["tempo_qpm"] <= arrangement.QPM_RANGE[1]
    assert item["seconds"] >= jobs.MIN_SECONDS
    assert manifest["summary"]["by_source"]["music21"]["items"] == 1

    flac = tmp_path / "a" / item["path"]
    info = soundfile.info(str(flac))
    assert (info.samplerate, info.channels, info.format, info.subtype) == (22050, 1, "FLAC", "PCM_16")
    assert info.duration == pytest.approx(item["seconds"], abs=1e-3)
    samples, _ = soundfile.read(str(flac), dtype="float32")
    assert 0.8 < np.max(np.abs(samples)) <= 1.0  # normalised to -1 dBFS
    assert np.sqrt(np.mean(samples[: 22050 * 5] ** 2)) > 0.01  # music from the start, not leading silence

    assert builds[0] == builds[1]
    assert flac.read_bytes() == (tmp_path / "b" / item["path"]).read_bytes()
    assert build.corpus_summary(tmp_path / "a" / "manifest.json").startswith("music21: 1 piece ")

    # A second build over the first reuses the file instead of rendering it again.
    lines = []
    before = flac.stat().st_mtime_ns
    build.build_corpus(tmp_path / "a", sources=("music21",), max_scores=1, workers=1, progress=lines.append)
    assert flac.stat().st_mtime_ns == before
    assert any("1 already done" in line for line in lines)


def test_no_debian_package_installed_is_a_one_line_config_error(tmp_path, monkeypatch):
    monkeypatch.setattr(build, "DEBIAN_PACKAGES", ("encore-no-such-soundtrack",))
    with pytest.raises(ConfigError) as error:
        build.build_corpus(tmp_path, sources=("debian",))
    message = str(error.value)
    assert "\n" not in message
    assert "apt-get install encore-no-such-soundtrack" in message


def test_some_debian_packages_missing_is_a_warning(tmp_path, monkeypatch):
    track = tmp_path / "usr" / "share" / "game" / "music" / "theme.ogg"
    track.parent.mkdir(parents=True)
    rng = np.random.default_rng(0)
    soundfile.write(str(track), (0.1 * rng.standard_normal((44100 * 35, 2))).astype(np.float32), 44100,
                    format="OGG", subtype="VORBIS")
    listings = {"encore-fake-music": [str(track.parent), str(track)], "encore-missing-music": []}
    monkeypatch.setattr(build, "DEBIAN_PACKAGES", tuple(listings))
    monkeypatch.setattr(packages, "dpkg_files", lambda package: listings[package])
    lines = []
    manifest = json.loads(build.build_corpus(tmp_path / "out", sources=("debian",), workers=1,
                                             progress=lines.append).read_text())
    assert manifest["missing_packages"] == ["encore-missing-music"]
    assert any("apt-get install encore-missing-music" in line for line in lines)
    [item] = manifest["items"]
    assert item["path"] == "audio/encore-fake-music/theme.flac" and item["origin"] == str(track)
    info = soundfile.info(str(tmp_path / "out" / item["path"]))
    assert (info.samplerate, info.channels) == (22050, 1)
    assert 34.0 < item["seconds"] <= 35.0


def test_demo_score_is_never_in_the_corpus(music21_root):
    assert (music21_root / scores.DEMO_SCORE).is_file()
    selection, excluded = scores.select_scores(music21_root)
    assert scores.DEMO_SCORE not in selection
    assert {"origin": scores.DEMO_SCORE, "reason": "the demo song's score"} in excluded
    assert len(set(selection)) == len(selection) > 500
    # The first picks span collections rather than exhausting one composer.
    assert len({path.split("/")[0] for path in selection[:20]}) == 20


def test_loops_are_found_and_music_is_not():
    rate = 22050
    rng = np.random.default_rng(1)
    # 35 s of noise bursts with a changing spectrum, played three times.
    bursts = [rng.standard_normal(rate // 4) * rng.uniform(0.01, 0.5) for _ in range(35 * 4)]
    period = np.concatenate([np.convolve(b, np.ones(rng.integers(1, 20)) / 10, mode="same") for b in bursts])
    looped = np.tile(period, 3).astype(np.float32)
    found = packages._loop_period(looped, rate)
    assert found is not None and found[0] == pytest.approx(35.0, abs=0.2)
    assert packages._loop_period(rng.standard_normal(rate * 120).astype(np.float32) * 0.1, rate) is None


def test_dep5_licence_of_an_installed_file():
    copyright_text = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/

Files: *
Copyright: 2002 Someone
License: GPL-2+

Files:
 base/music/Song.ogg
 base/music/Other.ogg
Copyright: A Composer
License: CC-BY-SA-3.0

Files: debian/*
Copyright: A Packager
License: GPL-2+
"""
    stanzas = packages.dep5_stanzas(copyright_text)
    assert packages.dep5_licence(stanzas, "/usr/share/games/x/base/0music.pk3!music/Song.ogg") == "CC-BY-SA-3.0"
    assert packages.dep5_licence(stanzas, "/usr/share/games/x/music/Else.ogg") == "GPL-2+"


@needs_fluidsynth
def test_demo_song_is_stereo_deterministic_ogg(tmp_path, music21_root):
    first = render_demo_song(tmp_path / "one" / "demo.ogg", seconds=6.0)
    second = render_demo_song(tmp_path / "two.ogg", seconds=6.0)
    assert first.read_bytes() == second.read_bytes()
    samples, rate = soundfile.read(str(first), dtype="float32")  # libsndfile checks every page's CRC
    assert rate == 44100 and samples.shape[1] == 2
    assert samples.shape[0] / rate == pytest.approx(6.0, abs=0.05)
    assert 20 * np.log10(np.max(np.abs(samples))) == pytest.approx(scores.PEAK_DBFS, abs=0.5)
    # Cut mid-music: the last half second is as busy as the song, not a fade into silence.
    rms = float(np.sqrt(np.mean(samples ** 2)))
    assert np.sqrt(np.mean(samples[-rate // 2: -rate // 50] ** 2)) > 0.3 * rms


def test_the_ogg_writer_fixes_the_serial_and_changes_nothing_else(tmp_path):
    """The demo song's bytes stay the same run to run: libsndfile's random serial number is replaced on every
    page, each page's checksum with it, and no other byte of libsndfile's stream changes."""
    OggPage = pytest.importorskip("mutagen.ogg").OggPage
    rng = np.random.default_rng(3)
    samples = np.clip(0.3 * rng.standard_normal((44100 * 3, 2)), -1.0, 1.0).astype(np.float32)
    written = write_ogg_vorbis(tmp_path / "a.ogg", samples, 44100).read_bytes()
    assert write_ogg_vorbis(tmp_path / "b.ogg", samples, 44100).read_bytes() == written
    soundfile.write(str(tmp_path / "raw.ogg"), samples, 44100, format="OGG", subtype="VORBIS")
    raw = (tmp_path / "raw.ogg").read_bytes()

    source, pages = io.BytesIO(written), []
    while source.tell() < len(written):
        pages.append(OggPage(source))
    assert len(pages) > 3 and {page.serial for page in pages} == {OGG_SERIAL}
    assert len(raw) == len(written)
    differ = np.flatnonzero(np.frombuffer(raw, np.uint8) != np.frombuffer(written, np.uint8))
    serial_and_checksum = {page.offset + i for page in pages for i in (*range(14, 18), *range(22, 26))}
    assert set(differ.tolist()) <= serial_and_checksum
    # libvorbis skips a page whose checksum is wrong: every frame decoding back says every checksum is right.
    decoded, rate = soundfile.read(str(tmp_path / "a.ogg"), dtype="float32")
    assert rate == 44100 and decoded.shape == samples.shape


def test_bad_arguments_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown corpus source"):
        build.build_corpus(tmp_path, sources=("youtube",))
    with pytest.raises(ConfigError, match="workers"):
        build.build_corpus(tmp_path, sources=("music21",), workers=0)
