"""The house's shape: imports run one way, so no module of engine/ or training/ is tied in a circle.

Every import is counted, also those inside functions and under TYPE_CHECKING: a lazy import is still a tie.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("encore", "engine", "player", "training")
#: Which packages each may import: the front door on top, the engine at the bottom.
ALLOWED = {"encore": {"engine", "player", "training"}, "player": {"engine"}, "training": {"engine"}, "engine": set()}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The project modules ``path`` imports (a name imported from a package counts as that submodule if it is one)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return {name for name in found if name.split(".")[0] in PACKAGES}


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}
    return {module: {name for name in _imports(path) if name in files and name != module}
            for module, path in files.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of the graph, or None (depth-first search, colouring the path being walked)."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (found := visit(target)):
                return found
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_no_module_is_tied_in_an_import_circle():
    graph = _graph()
    # a package's __init__ re-exports its modules; a module importing its own package is the only tie allowed back
    graph = {m: {t for t in targets if not (t in PACKAGES and m.startswith(t + "."))} for m, targets in graph.items()}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_circle_finder_finds_a_circle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_imports_run_down_the_house():
    for module, targets in _graph().items():
        package = module.split(".")[0]
        foreign = {t.split(".")[0] for t in targets} - {package}
        assert foreign <= ALLOWED[package], f"{module} imports {sorted(foreign - ALLOWED[package])}"


#: training/'s subpackages by job, each on a floor: a module imports only from lower floors or its own subpackage,
#: so the paper's model and the resynth scorer never import each other. The commands (training/cli.py, bench.py)
#: stand on top.
TRAINING_FLOORS = {"common": 0, "corpus": 1, "seed": 2, "scorer": 2, "evaluation": 2}
TRAINING_TOP = len(set(TRAINING_FLOORS.values())) + 1


def _training_place(module: str) -> tuple[int, str]:
    """(floor, subpackage) of a module of training/ (its commands on the top floor, in a room of their own)."""
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in TRAINING_FLOORS:
        return TRAINING_FLOORS[parts[1]], parts[1]
    return TRAINING_TOP, module


def test_training_imports_run_down_its_subpackages():
    graph = _graph()
    assert {m.split(".")[1] for m in graph if m.startswith("training.") and m.count(".") > 1} == set(TRAINING_FLOORS)
    for module, targets in graph.items():
        if not module.startswith("training."):
            continue
        floor, room = _training_place(module)
        for target in (t for t in targets if t.startswith("training.") and t != "training"):
            target_floor, target_room = _training_place(target)
            if target_room in TRAINING_FLOORS or room in TRAINING_FLOORS:
                assert target_room == room or target_floor < floor, f"{module} imports {target}"


def _set_outside_init(path: Path, class_name: str, *roles: tuple[Path, str]) -> set[str]:
    """Attributes of ``self`` that a class's methods (and those of its mixin ``roles``, as (file, class)) assign
    but its ``__init__`` never does."""
    in_init, elsewhere = set(), set()
    for file, name in ((path, class_name), *roles):
        (cls,) = [n for n in ast.parse(file.read_text()).body if isinstance(n, ast.ClassDef) and n.name == name]
        for method in (n for n in cls.body if isinstance(n, ast.FunctionDef)):
            for node in ast.walk(method):
                targets = node.targets if isinstance(node, ast.Assign) else \
                    [node.target] if isinstance(node, ast.AnnAssign | ast.AugAssign) else []
                for target in targets:
                    for part in ast.walk(target):
                        if isinstance(part, ast.Attribute) and isinstance(part.value, ast.Name) \
                                and part.value.id == "self":
                            is_init = name == class_name and method.name == "__init__"
                            (in_init if is_init else elsewhere).add(part.attr)
    return elsewhere - in_init


def test_the_engine_and_every_generator_set_every_attribute_in_init(tmp_path):
    playback = ROOT / "engine" / "playback"
    # the state every role shares is declared in one __init__: PlaybackState's
    roles = [(playback / "callback.py", "AudioCallback"), (playback / "live.py", "LiveInput"),
             (playback / "worker.py", "GenerationWorker"), (playback / "transport.py", "Engine")]
    assert _set_outside_init(playback / "state.py", "PlaybackState", *roles) == set()
    assert _set_outside_init(ROOT / "engine" / "extend.py", "Extender") == set()
    assert _set_outside_init(ROOT / "engine" / "resynth.py", "Resynthesizer") == set()
    assert _set_outside_init(ROOT / "engine" / "process" / "parent.py", "GeneratorProcess") == set()
    assert _set_outside_init(ROOT / "engine" / "process" / "child.py", "_Server") == set()
    # the finder sees what it should: an attribute first set in a method, or in a role's method
    sample = tmp_path / "sample.py"
    sample.write_text("class A:\n    def __init__(self):\n        self.a = 1\n"
                      "    def go(self):\n        self.a, self.b = 2, 3\n        self.c: int = 4\n"
                      "class Role:\n    def act(self):\n        self.d = 5\n")
    assert _set_outside_init(sample, "A") == {"b", "c"}
    assert _set_outside_init(sample, "A", (sample, "Role")) == {"b", "c", "d"}


def test_no_source_file_is_over_600_lines():
    long = {str(p.relative_to(ROOT)): n for package in (*PACKAGES, "tests")
            for p in (ROOT / package).rglob("*.py") if (n := len(p.read_text().splitlines())) > 600}
    assert long == {}
