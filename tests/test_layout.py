"""The library's layout keeps its promises: no import cycle (function-level imports included), a
core that imports nothing of files, training or drawing, and figure modules that never switch
matplotlib's backend or use pyplot."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "mistral_np"
CORE = {"config", "weights", "layers", "attention", "cache", "model", "costs", "sampling"}
OUTSIDE_CORE = {"checkpoint", "safetensors", "gguf", "train", "backward", "evaluate", "bench", "figures",
                "quantize", "corpus", "__main__"}


def module_name(path):
    rel = path.relative_to(PACKAGE).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(parts) or "__init__"


def resolve(parts):
    """The package module that a dotted path names (a module, a package, or a name inside one)."""
    while parts:
        name = ".".join(parts)
        if (PACKAGE / (name.replace(".", "/") + ".py")).exists():
            return name
        if (PACKAGE / name.replace(".", "/") / "__init__.py").exists():
            return name
        parts = parts[:-1]
    return "__init__"                                             # the package itself


def imports(path):
    """Modules of the package that `path` imports anywhere in it (top level or inside functions)."""
    folder = list(path.relative_to(PACKAGE).parent.parts)         # the package `from .` means
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                target = folder[:len(folder) - (node.level - 1)] + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "mistral_np":
                target = node.module.split(".")[1:]
            else:
                continue
            found |= {resolve(target + [a.name]) for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {resolve(a.name.split(".")[1:]) for a in node.names if a.name.split(".")[0] == "mistral_np"}
    found.discard(module_name(path))
    return found


def graph():
    return {module_name(p): imports(p) for p in PACKAGE.rglob("*.py")}


def test_no_import_cycle():
    g = graph()
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in g.get(node, ()):
            if state.get(nxt) == "open":
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in g:
        if node not in state:
            visit(node, [node])


def test_the_core_imports_no_files_training_or_figures():
    g = graph()
    for name in CORE:
        reach, todo = set(), [name]
        while todo:
            for nxt in g[todo.pop()]:
                if nxt not in reach:
                    reach.add(nxt)
                    todo.append(nxt)
        bad = {m for m in reach if m.split(".")[0] in OUTSIDE_CORE}
        assert not bad, f"{name} imports {sorted(bad)}"


def test_figure_modules_leave_the_backend_alone():
    for path in (PACKAGE / "figures").glob("*.py"):
        text = path.read_text()
        assert "matplotlib.use(" not in text and "pyplot" not in text.replace("no pyplot", ""), path.name
        assert "savefig(path" not in text, f"{path.name}: write figures through output.finish"
