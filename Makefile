# Encore: two commands do all the set-up on a fresh machine.
#   make demo   extend the shipped demo song with the shipped default model (encore extend --demo) -> endless-demo.wav
#   make test   the test suite (make test-fast: its unit tests alone, for the edit-test loop)
# Both create .venv and install what they need (Debian packages too, when run as root and they are missing).

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check -q

# Debian packages: libportaudio2 for sounddevice; libspeexdsp1, the echo canceller of live input through speakers
# (engine/aec.py; without it a level gate stands in); FluidSynth and its General MIDI soundfont render scores
# (the corpus, the demo song and their tests); JACK (dummy driver) is the real audio server of playback tests.
# Qt's xcb platform plugin needs the libxcb set below (its error names libxcb-cursor0 even when icccm4 or
# keysyms1 is what is missing); Xvfb is the real X server of the window test.
APT_RUNTIME := libportaudio2 libsndfile1 libspeexdsp1
APT_PLAYER := libegl1 libgl1 libfontconfig1 libdbus-1-3 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 \
	libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxcb-shape0 libxcb-randr0 libxcb-xkb1 libxcb-xinerama0
APT_TEST := fluidsynth fluid-soundfont-gm jackd2 xvfb $(APT_PLAYER)
# Training corpus sources (large: 0ad-data is 1.4 GB); only `make corpus` installs them.
APT_CORPUS := warzone2100-music ufoai-music 0ad-data planetblupi-music-ogg
# Evaluation set sources, never in the corpus: orchestral (Wesnoth) and pop/electronic (SuperTuxKart, 0.7 GB).
APT_EVAL := wesnoth-1.16-music supertuxkart-data

DEMO_OUT := endless-demo.wav
DEMO_SECONDS ?= 90

.PHONY: demo test test-fast player screenshot corpus evalset devset evaluate longlisten longlisten-dev train-default train-resynth lint bench clean apt-runtime apt-player \
	apt-test apt-corpus apt-eval

demo: $(VENV)/.runtime apt-runtime
	$(BIN)/encore extend --demo -o $(DEMO_OUT) --duration $(DEMO_SECONDS)s

test: $(VENV)/.dev apt-runtime apt-test
	$(BIN)/python -m pytest -q --durations=0 --durations-min=5

# The unit tests alone, for the edit-test loop (under 3 minutes here): no JACK server, no window, no training runs,
# no wheel build and no minutes of rendered audio. CI runs `make test`.
test-fast: $(VENV)/.dev apt-runtime
	$(BIN)/python -m pytest -q -m "not slow and not audio_server and not gui" --durations=10

# The desktop player (needs a display).
player: $(VENV)/.player apt-runtime apt-player
	$(BIN)/encore player

# The README's screenshot of the window: the real-window test (Xvfb, JACK) keeps the picture it judged.
screenshot: $(VENV)/.dev apt-runtime apt-test
	ENCORE_SCREENSHOT=assets/figures/player.png $(BIN)/python -m pytest -q tests/player/test_player_window.py

lint: $(VENV)/.dev
	$(BIN)/ruff check encore engine training player tests
	$(BIN)/mypy engine player

# Speed and memory, the echo canceller on simulated rooms, and the soak: play --endless and live through a room of
# JACK ports, SOAK_MINUTES each with a busy process per core beside (on a JACK server of its own, dummy driver).
SOAK_MINUTES ?= 10
bench: $(VENV)/.dev apt-runtime apt-test
	$(BIN)/encore bench
	$(BIN)/encore bench --echo
	./.ci/with-jack $(BIN)/encore bench --soak --minutes $(SOAK_MINUTES) --load $$(nproc) --json bench-soak.json

# Build the training corpus (7 minutes here; its packages are a 1.7 GB download).
corpus: $(VENV)/.dev apt-test apt-corpus
	$(BIN)/encore train corpus corpus

# Cut the evaluation set (36 clips of 40 s from two packages the corpus never uses), and score every generator on
# it side by side (35 to 42 minutes on one core here: the real-time factors are per core).
evalset: $(VENV)/.dev apt-eval
	$(BIN)/encore train evalset evalset

# The dev set: clips of the corpus's validation songs, where the engine's settings are chosen (never the evaluation set).
devset: $(VENV)/.dev
	$(BIN)/encore train devset corpus devset

evaluate: evalset
	$(BIN)/encore train evaluate evalset --generators seed,resynth,jukebox,loop,match,silence --draws 4 --out evaluation

# The long listen: 10 minutes after each of 12 whole tracks of the evaluation packages, judged in jumps, runs,
# downbeats, beat grid and bars heard (a spectrogram of each song's end and first minute after it in longlisten/figures).
longlisten: $(VENV)/.dev apt-eval
	$(BIN)/encore train longlisten longlisten --minutes 10 --generators resynth,jukebox,match,loop \
		$(if $(wildcard evaluation/results.json),--ten-seconds evaluation/results.json)

# The same on 12 whole validation songs of the corpus (`make corpus` first): where the long listen's settings are
# chosen, so that the evaluation packages only judge them.
longlisten-dev: $(VENV)/.dev
	$(BIN)/encore train longlisten longlisten-dev --dev-corpus corpus --minutes 10 --generators resynth,jukebox,match,loop

train-default: $(VENV)/.dev
	$(BIN)/encore train fit corpus --run-dir runs/compact --preset compact --files 0 --windows-per-song 6 --max-minutes 50 \
		--patience 6 --epochs 200
	$(BIN)/encore train report runs/compact
	$(BIN)/encore train export runs/compact -o assets/models/encore-compact.onnx

# Retrain the resynth generator's segment scorer on the same corpus (segmenting it: about 1.5 min, cached in
# corpus/.segments; training: about 6 min on 2 CPU cores, 11 epochs).
train-resynth: $(VENV)/.dev
	$(BIN)/encore train fit --model resynth corpus --run-dir runs/resynth --target standin --candidate-lookahead 16 \
		--standin-harmony-weight 2 --examples-per-song 128 --patience 6 --max-minutes 24 --epochs 300
	$(BIN)/encore train export runs/resynth -o assets/models/encore-resynth.onnx
	cp runs/resynth/report.json assets/figures/resynth-report.json

$(VENV)/.created:
	$(PYTHON) -m venv $(VENV)
	touch $@

# The install also compiles librosa's numba functions once (about 25 s here; cached on disk after that), so a
# first song's first continuation does not wait for them.
$(VENV)/.runtime: $(VENV)/.created pyproject.toml
	$(PIP) install -e .
	$(BIN)/python -c "import engine.analysis; engine.analysis.warm_up()"
	touch $@

$(VENV)/.player: $(VENV)/.runtime pyproject.toml
	$(PIP) install -e '.[player]'
	touch $@

$(VENV)/.dev: $(VENV)/.runtime pyproject.toml
	$(PIP) install -e '.[train,player,dev]'
	touch $@

apt-runtime:
	@./.ci/apt-ensure $(APT_RUNTIME)

apt-player:
	@./.ci/apt-ensure $(APT_PLAYER)

apt-test:
	@./.ci/apt-ensure $(APT_TEST)

apt-corpus:
	@./.ci/apt-ensure $(APT_CORPUS)

apt-eval:
	@./.ci/apt-ensure $(APT_EVAL)

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
