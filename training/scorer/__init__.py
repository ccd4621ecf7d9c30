"""The resynth generator's learned scorer: which bar of a song comes next, trained contrastively on the corpus's
segmented songs, and exported to ONNX with the resynth contract.

The engine's resynth generator continues a song by playing its own segments (beats, onsets or grid cells, see
:mod:`engine.analysis`) in a new order. At each step it needs to rank the song's segments as the next one; this
package trains that ranking and exports it for :class:`engine.scorer.SegmentScorer`.

``segments`` (the songs, segmented and cached) -> ``model`` (the Keras scorer, its config and contract) ->
``examples`` (contrastive examples drawn from the songs) -> ``run`` (a run folder, loaded) -> ``report`` (how
well it ranks) -> ``fit`` (training) and ``export`` (ONNX).
"""
