"""Judging generators: the 10 s criteria against the true continuation, the long listen over minutes, downbeat
accuracy on labelled renders, and the measures they share."""
