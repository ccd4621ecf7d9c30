"""The music that training and evaluation read: the training corpus (rendered scores and Debian game music), the
shipped demo song, the evaluation and dev sets of clips, and the train/validation split of a folder of audio."""
