"""What ``training evaluate`` shows a reader: the summary table with each bar and its paired comparisons, and a
spectrogram per song of the context, each continuation and the true one."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .metrics.rhythm import SLIP_FAR_MS
from .paired import PAIRED_STANDARD_ERRORS, TRUE, paired_word, verdict_word

PAIRED_LABELS = {"logmel_db": "log-mel dB", "harmony": "harmony"}

COLUMNS = ("generator", "log-mel dB", "harmony", "jump med/p95", "HF med/p95", "tempo %", "key %", "beat F",
           "slip ms/%>40", "step LU", "flatness", "loop s", "recur %", "RTF", "RTF 1st")


def format_table(results: dict, *, markdown: bool = False) -> str:
    """The summary table: one row per generator (the true continuation first, the music's own seams last),
    then the bar of each model generator."""
    def number(value, digits=2, scale=1.0) -> str:
        if value is None or not np.isfinite(value):
            return "-"
        return f"{value * scale:.3g}" if abs(value * scale) >= 1e4 else f"{value * scale:.{digits}f}"

    def pair(a, b, digits=1) -> str:
        return f"{number(a, digits)}/{number(b, digits)}"

    rows = []
    for name, s in results["summary"].items():
        seams = s["seams"]
        rows.append((name, number(s["logmel_db"], 1), number(s.get("harmony", math.nan)),
                     pair(seams["jump_median"], seams["jump_p95"]),
                     pair(seams["hf_ratio_median"], seams["hf_ratio_p95"]),
                     number(s["tempo_held"], 0, 100), number(s["key_held"], 0, 100), number(s["beat_f"]),
                     f"{number(s.get('join_slip_ms', math.nan), 0)}/"
                     f"{number(s.get('join_slip_far_share', math.nan), 0, 100)}",
                     number(s["loudness_step_lu"], 1), number(s["flatness_ratio"]), number(s["longest_loop_s"], 0),
                     number(s["repeated_share"], 0, 100), number(s["real_time_factor"], 4),
                     number(s.get("first_chunk_real_time_factor", math.nan), 4)))
    music = results["reference_seams"]
    rows.append(("(music)", "", "", pair(music["jump_median"], music["jump_p95"]),
                 pair(music["hf_ratio_median"], music["hf_ratio_p95"]), "", "", "", "", "", "", "", "", "", ""))
    if markdown:
        lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
    else:
        widths = [max(len(str(row[i])) for row in [COLUMNS, *rows]) for i in range(len(COLUMNS))]
        lines = ["  ".join(str(cell).rjust(w) if i else str(cell).ljust(w) for i, (cell, w) in
                           enumerate(zip(row, widths, strict=True))) for row in [COLUMNS, *rows]]
    settings = results["settings"]
    lines.append("")
    lines.append(f"{settings['songs']} songs, cut at {settings['cut_s']:g} s, {settings['horizon_s']:g} s generated. "
                 "Medians over songs; harmony: 1 - concordance of the key profiles (0 the same, 1 none shared, as "
                 "silence or noise); jump and HF ratio over all joins (med/p95); tempo % and key %: songs where "
                 "it is held; slip: how far the beats after each join are out of step with those before it (median ms, "
                 f"and the share over {SLIP_FAR_MS:g} ms; the true continuation at its cut: the tracker's own "
                 "scatter); step LU: |loudness step| at the cut; flatness: over the context's (20 s before the cut); "
                 f"loop s: longest exact loop (max over songs) and recur %: time in exact repeats of 10 s or more, "
                 f"over {settings['repetition_minutes']:g} min extensions; RTF: compute per second of audio, median "
                 "chunk, and RTF 1st: the first chunk (resynth: analysis of the memory included), on one core. "
                 "(music): the songs' own beat boundaries scored as joins."
                 + (f" Resynth and jukebox: each song's 10 s measures averaged over {settings['draws']} draws of "
                    "their variety noise (tempo % and key %: share of draws)." if settings.get("draws", 1) > 1
                    else ""))
    if results.get("missing"):
        lines.append("")
        lines.append(f"Not in these per-song scores, so not judged: {', '.join(results['missing'])} (an evaluation "
                     "from before the criterion; its 'chroma' is another measure and is not read as harmony). "
                     "training evaluate scores it.")

    def agreement(judged: dict) -> str:
        return f"the same in {judged['agreement'] * 100:.0f} % of song resamplings"

    for name, bar in results["bar"].items():
        lines.append("")
        tracks = bar.get("resampled_tracks", settings["songs"])
        drawn = ("drawn with replacement" if tracks == settings["songs"]
                 else f"each drawing {tracks} tracks with replacement, a track's clips together")
        lines.append(f"{'**' if markdown else ''}bar for {name}: {verdict_word(bar['pass'])}{'**' if markdown else ''}"
                     + (f" ({agreement(bar)}, {bar['resamples']} {drawn})" if "agreement" in bar else ""))
        for label, criterion in bar["criteria"].items():
            lines.append(f"{'- ' if markdown else '  '}{verdict_word(criterion['pass'])}  {label}: "
                         f"{number(criterion['value'], 3)} (target {number(criterion['target'], 3)})"
                         + (f"; {agreement(criterion)}" if "agreement" in criterion else ""))
        for rival, by_metric in results.get("paired", {}).get(name, {}).items():
            truth = rival == TRUE
            parts = [f"{f'{key} held' if truth else PAIRED_LABELS[key]} {d['mean_difference']:+.3f} ± "
                     f"{d['standard_error']:.3f}, {paired_word(d)} ({'more often' if truth else 'closer'} on "
                     f"{d['songs_better']} of {d['songs']} songs)" for key, d in by_metric.items()]
            against = "the true continuation, share of draws" if truth else rival
            lines.append(f"{'- ' if markdown else '  '}paired against {against}, mean difference ± standard error "
                         f"(better or worse: by over {PAIRED_STANDARD_ERRORS:g} of them): " + "; ".join(parts))
    return "\n".join(lines)


def write_spectrograms(path: Path, strips: dict[str, np.ndarray], rate: int, *, cut_s: float, horizon_s: float,
                       title: str) -> None:
    """One row per generator: context | generated | true as a log-mel spectrogram, lines at the cut and after."""
    import librosa
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    context, true = strips["context"], strips[TRUE]
    names = [n for n in strips if n not in ("context", TRUE)]
    analysis_rate = min(rate, 22050)
    images = []
    for name in names:
        audio = np.concatenate([context, strips[name], true])
        audio = librosa.resample(audio, orig_sr=rate, target_sr=analysis_rate) if rate != analysis_rate else audio
        mel = librosa.feature.melspectrogram(y=audio, sr=analysis_rate, n_fft=1024, hop_length=256, n_mels=64)
        images.append(librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None))
    top = max(float(image.max()) for image in images) if images else 0.0
    figure, axes = plt.subplots(len(names), 1, figsize=(11, 1.5 + 1.3 * len(names)), squeeze=False, sharex=True)
    total = cut_s + 2 * horizon_s
    for axis, name, image in zip(axes[:, 0], names, images, strict=True):
        axis.imshow(image, origin="lower", aspect="auto", cmap="magma", vmin=top - 80, vmax=top,
                    extent=(-cut_s, total - cut_s, 0, image.shape[0]))
        for x in (0.0, horizon_s):
            axis.axvline(x, color="white", linewidth=1.2)
        axis.set_ylabel(name, rotation=0, ha="right", va="center")
        axis.set_yticks([])
    axes[0, 0].set_title(f"{title}: context | generated | true (log-mel, 80 dB range)")
    axes[-1, 0].set_xlabel("seconds from the cut")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
