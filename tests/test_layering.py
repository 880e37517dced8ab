"""The module layering of ../shared/notes/architecture.md, enforced.

* Each module, imported alone in a fresh interpreter, leaves the heavy libraries it must not
  import out of sys.modules (the pure stages load in milliseconds; a profile loads without torch).
  A module of the table that does not exist is a failure, not a skip: the table is the plan.
* No import cycles among thacam's modules, counting every import (inside functions too: a cycle
  that only bites at call time is still a cycle), and nothing imports thacam.cli.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "thacam"

TORCH_CV2_MP = ("torch", "cv2", "mediapipe")
NOTHING_HEAVY = ("torch", "cv2", "mediapipe", "numpy", "PIL")

# module -> what importing it must not import
MUST_NOT_IMPORT: dict[str, tuple[str, ...]] = {
    "pose": TORCH_CV2_MP,
    "errors": NOTHING_HEAVY,
    "files": NOTHING_HEAVY,
    "settings": NOTHING_HEAVY,
    "weights": ("torch",),
    "character": ("torch", "cv2"),
    "faces": TORCH_CV2_MP,               # character imports it: no cv2; mediapipe when used
    "retarget": TORCH_CV2_MP,
    "face_geometry": TORCH_CV2_MP,
    "fidelity": TORCH_CV2_MP,            # the stages (app) only when avatar_poses runs
    "animation": TORCH_CV2_MP,
    "tracking": TORCH_CV2_MP,            # mediapipe only when a tracker is made
    "capture": ("torch", "mediapipe"),
    "obs": TORCH_CV2_MP,
    "obs_camera": TORCH_CV2_MP,
    "obs_media": NOTHING_HEAVY,
    "profile": TORCH_CV2_MP,
    "controls": TORCH_CV2_MP,
    "render": ("torch",),                # the package: RenderSettings, not the engine
    "output": ("torch",),
    "output.stream": TORCH_CV2_MP,       # PyAV only once a reader connects
    "sources": ("torch",),
    "lipsync": TORCH_CV2_MP + ("sounddevice", "av"),
    "sources.audio": TORCH_CV2_MP + ("sounddevice", "av"),   # both only when a mic/file opens
    "sources.network": TORCH_CV2_MP,
    "sources.ifacialmocap": TORCH_CV2_MP,
    "sources.vmc": TORCH_CV2_MP,
    "sources.openseeface": TORCH_CV2_MP,
    "sources.merge": TORCH_CV2_MP,       # the sources it merges import theirs when made
    "pipeline": ("torch",),
    "runstats": TORCH_CV2_MP,
    "offline": ("torch",),
    "panel": TORCH_CV2_MP,
    "panel.api": TORCH_CV2_MP,
    "panel.preview": TORCH_CV2_MP,
    "panel.server": TORCH_CV2_MP,        # aiohttp only when the server starts
    "output.threaded": TORCH_CV2_MP,
    "model.kernels": ("cv2", "mediapipe", "triton"),   # Triton only for CUDA tensors
    "model.stages": ("cv2", "mediapipe", "triton", "openvino"),
}


@pytest.mark.parametrize("module", sorted(MUST_NOT_IMPORT))
def test_module_does_not_import_heavy_libraries(module):
    forbidden = MUST_NOT_IMPORT[module]
    code = (f"import importlib, sys; importlib.import_module('thacam.{module}'); "
            f"print(' '.join(m for m in {forbidden!r} if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert run.returncode == 0, f"import thacam.{module} failed:\n{run.stderr}"
    assert run.stdout.strip() == "", f"thacam.{module} imports {run.stdout.strip()}"


# ------------------------------------------------------------------------------ import graph

def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(root: Path) -> dict[str, set[str]]:
    """module -> the package's modules it imports, from every .py file under ``root``.

    Every import statement counts, wherever it stands (module level, functions, TYPE_CHECKING).
    ``from X import name`` is an edge to the submodule X.name when there is one, else to X itself
    (a package's names live in its __init__); ``import X.Y`` is an edge to X.Y. The parent
    packages Python runs on the way are not edges: a submodule that imports its package's names
    is a cycle only when that __init__ imports the submodule back.
    """
    files = {_module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base_parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(base_parts + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.append(sub if sub in files else base)
            # A module that does not exist (yet) is not an edge; nor is a module importing itself.
            graph[name].update(t for t in targets if t in files and t != name)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a path a -> ... -> a) per strongly connected component that has one."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)

    cycles = []
    for comp in components:
        members, start = set(comp), min(comp)
        # Breadth-first from start back to start, inside the component: a shortest cycle.
        prev: dict[str, str] = {}
        queue, seen = [start], {start}
        while queue:
            v = queue.pop(0)
            nxt = sorted(w for w in graph[v] if w in members)
            if start in nxt:
                path = [v]
                while path[-1] != start:
                    path.append(prev[path[-1]])
                cycles.append(path[::-1] + [start])
                break
            for w in nxt:
                if w not in seen:
                    seen.add(w)
                    prev[w] = v
                    queue.append(w)
    return cycles


def test_no_import_cycles():
    graph = import_graph(PACKAGE)
    # The parser sees what it must: relative, function-level and package-name imports.
    assert "thacam.model.openvino" in graph["thacam.model.fast"]      # inside select_runner
    assert "thacam.pose" in graph["thacam.model.poser"]               # from .. import pose
    assert "thacam.render" in graph["thacam.render.engine"]           # from . import (names)
    cycles = find_cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_nothing_imports_the_cli():
    def is_cli(m: str) -> bool:
        return m == "thacam.cli" or m.startswith("thacam.cli.")

    # `python -m thacam` (thacam/__main__.py) runs the CLI: that is its whole job.
    bad = sorted(f"{m} -> {t}" for m, targets in import_graph(PACKAGE).items()
                 if not is_cli(m) and m != "thacam.__main__" for t in targets if is_cli(t))
    assert not bad, "only the CLI may import the CLI:\n" + "\n".join(bad)


def test_the_cycle_finder_on_a_small_tree(tmp_path):
    """The checker itself: it must see cycles through function-level and package imports, and
    not call a submodule that imports its package's names a cycle when the package does not
    import it back."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "",
        "a.py": "def f():\n    from . import b\n",   # a -> b, inside a function
        "b.py": "from .c import X\n",                  # b -> c
        "c.py": "import pkg.a\nX = 1\n",              # c -> a: the cycle a -> b -> c -> a
        "sub/__init__.py": "from .leaf import Y\n",    # sub -> sub.leaf
        "sub/leaf.py": "from . import other\nY = 2\n",  # leaf -> sub.other (a module)
        "sub/other.py": "from pkg.sub import Y\n",     # other -> sub (a name): sub -> ... -> sub
        "sub/third.py": "from pkg.sub import other\n",  # third -> sub.other (a module)
        "d.py": "from pkg import e\n",                 # d -> e: no cycle
        "e.py": "from pkg.missing import Z\n",         # no such module: no edge
    }
    for rel, text in files.items():
        (pkg / rel).write_text(text)
    graph = import_graph(pkg)
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.d"] == {"pkg.e"} and graph["pkg.e"] == set()
    assert graph["pkg.sub.leaf"] == graph["pkg.sub.third"] == {"pkg.sub.other"}
    cycles = sorted(find_cycles(graph))
    assert cycles == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"],
                      ["pkg.sub", "pkg.sub.leaf", "pkg.sub.other", "pkg.sub"]]
    # Without the name imported from the package's __init__, nothing leads back to it.
    (pkg / "sub/other.py").write_text("Y = 3\n")
    assert find_cycles(import_graph(pkg)) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]


def test_no_module_is_over_700_lines():
    """A module that grows past this does more than one job: split it (the shell issue's rule)."""
    long = {str(p.relative_to(REPO)): n for p in sorted(PACKAGE.rglob("*.py"))
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 700}
    assert long == {}, f"modules over 700 lines: {long}"
