"""Objective measures of a continuation, a module per family: how close it comes to the real next seconds in
timbre and level (:mod:`.spectra`) and in harmony and key (:mod:`.harmony`), whether its beat goes on (:mod:`.rhythm`),
how seamless its joins are (:mod:`.seams`), how much of a long extension copies itself (:mod:`.repetition`), and how
fast it was made (:mod:`.speed`).

Every measure takes mono float arrays ``[shape=(frames,)]`` and the rate as the keyword ``sample_rate=`` (Hz);
downmix before calling (:mod:`.signals`: what every measure does with its input). Pure numpy, scipy, librosa,
mir_eval and pyloudnorm: importable without TensorFlow. :mod:`training.evaluation.evaluate` and
:mod:`training.evaluation.longlisten` run them over the evaluation songs; they are written to be cheap enough for a
few hundred calls (one or two librosa analyses each).

Conventions: "context" is the audio before the cut (the model's input), "generated" what a generator made
after it, "true" the song's real continuation. Distances are 0 for identical audio and grow with difference.
"""
