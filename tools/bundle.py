"""Bundle a package of modules into the one flat module that a CloudFormation ZipFile inlines.

handler/stats.py is the stats function as deployed: templates/function.py inlines it byte for
byte as Code.ZipFile, which holds one file. Its source is handler/src/stats/, one module a
concern; `python -m tools.bundle` (`make bundle`) writes the one file from it:

- each module's code, in dependency order, under a comment naming its source file: plain
  code, so the Lambda console shows what runs and a traceback names a real line of it;
- a module takes a sibling's names only as `from .sibling import a, b` (names the sibling
  defines at top level), which the bundle drops: one flat namespace, as before the split;
- every other top-level import is hoisted to the top, once; the project's pinned ruff then
  sorts the imports and formats the file, so the bundle is what ruff would leave it;
- it refuses, naming the file and line: a top-level name bound in two modules (or bound by
  a module and by an import), an import cycle, a module the entry does not reach, a name
  taken from a sibling that does not define it, and any other form of sibling import
  (`import sibling`, `from . import sibling`, `from .sibling import a as b`, `*`, `from ..`,
  a relative import below the top level).

Why not a library: the bundlers on PyPI (stickytape, pybunch, pypkgpack, tsutsumu) embed each
module as a string and install an import hook, so the console would show a blob and a
traceback would point into exec'd strings; stickytape's own README calls it bodged together,
tsutsumu is archived. amalgamate (xonsh, one release) glues modules flat but turns imports
into lazy proxies and needs a hook in a package __init__. This file does just the above.

`python -m tools.bundle --check` exits 1 when a bundle differs from its sources.
"""

import argparse
import ast
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# (source package, entry module, output): the entry is what the function's handler lives in.
BUNDLES = [("handler/src/stats", "app", "handler/stats.py")]


class BundleError(Exception):
    """A package the bundler will not flatten, and why."""


@dataclass
class Module:
    name: str
    path: Path
    docstring: str
    code: str  # the module's text without its docstring and top-level imports
    siblings: list[tuple[str, list[str], int]] = field(default_factory=list)  # module, names, line
    imports: list[ast.Import | ast.ImportFrom] = field(default_factory=list)  # hoisted
    binds: dict[str, int] = field(default_factory=dict)  # top-level name -> line


def bound_names(node: ast.AST) -> list[str]:
    """The module-level names a top-level statement binds (not those of nested scopes)."""
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [node.name]
    names, todo = [], [node]
    while todo:
        current = todo.pop()
        if isinstance(current, ast.Name) and isinstance(current.ctx, ast.Store):
            names.append(current.id)
        nested = (
            ast.FunctionDef,
            ast.AsyncFunctionDef,
            ast.ClassDef,
            ast.Lambda,
            ast.comprehension,
        )
        todo += [child for child in ast.iter_child_nodes(current) if not isinstance(child, nested)]
    return names


def where(path: Path, line: int) -> str:
    try:
        return f"{path.relative_to(ROOT)}:{line}"
    except ValueError:
        return f"{path}:{line}"


def read_module(path: Path, siblings: set[str]) -> Module:
    text = path.read_text(encoding="utf-8")
    tree = ast.parse(text, filename=str(path))
    module = Module(path.stem, path, ast.get_docstring(tree) or "", "")
    cut = set()
    top = set(map(id, tree.body))
    for node in ast.walk(tree):
        if isinstance(node, ast.Global):
            module.binds.update(dict.fromkeys(node.names, node.lineno))
        relative = isinstance(node, ast.ImportFrom) and node.level > 0
        named = [a.name.split(".")[0] for a in getattr(node, "names", [])]
        if isinstance(node, ast.ImportFrom) and node.level == 0:
            named = [(node.module or "").split(".")[0]]
        sibling = isinstance(node, ast.Import | ast.ImportFrom) and set(named) & siblings
        if (relative or sibling) and id(node) not in top:
            raise BundleError(f"{where(path, node.lineno)}: a sibling import below the top level")
    for node in tree.body:
        if node is tree.body[0] and module.docstring:
            cut.update(range(node.lineno, node.end_lineno + 1))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            cut.update(range(node.lineno, node.end_lineno + 1))
            take_import(module, node, siblings)
        else:
            module.binds.update(dict.fromkeys(bound_names(node), node.lineno))
    for node in module.imports:
        module.binds.update({bound: node.lineno for bound, _ in import_bindings(node)})
    lines = text.splitlines(keepends=True)
    module.code = "".join(line for number, line in enumerate(lines, 1) if number not in cut)
    return module


def take_import(module: Module, node: ast.Import | ast.ImportFrom, siblings: set[str]) -> None:
    at = where(module.path, node.lineno)
    if isinstance(node, ast.ImportFrom) and node.level > 0:
        aliased = [a.name for a in node.names if a.asname or a.name == "*"]
        if node.level > 1 or node.module not in siblings or aliased:
            raise BundleError(
                f"{at}: a sibling is imported only as `from .sibling import a, b`"
                f" (no `as`, no `*`; siblings: {', '.join(sorted(siblings))})"
            )
        module.siblings.append((node.module, [a.name for a in node.names], node.lineno))
        return
    roots = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
    if {root.split(".")[0] for root in roots} & siblings:
        raise BundleError(f"{at}: a sibling is imported only as `from .sibling import a, b`")
    module.imports.append(node)


def import_bindings(node: ast.Import | ast.ImportFrom) -> list[tuple[str, str]]:
    """(name bound, what it is bound to) for each name of a hoisted import."""
    if isinstance(node, ast.Import):
        return [
            (a.asname, a.name) if a.asname else (a.name.split(".")[0], a.name.split(".")[0])
            for a in node.names
        ]
    return [(a.asname or a.name, f"{node.module}.{a.name}") for a in node.names]


def dependency_order(modules: dict[str, Module], entry: str) -> list[Module]:
    """The modules the entry reaches, each after every module it imports from: by layer (a
    module that imports no sibling is 0, else one more than its highest sibling), then by
    name, so the foundations come first and the entry last."""
    layer: dict[str, int] = {}
    visiting: list[str] = []

    def visit(name: str) -> int:
        if name in layer:
            return layer[name]
        if name in visiting:
            cycle = [*visiting[visiting.index(name) :], name]
            raise BundleError("import cycle: " + " -> ".join(f"{n}.py" for n in cycle))
        visiting.append(name)
        below = [visit(sibling) for sibling, _, _ in modules[name].siblings]
        visiting.pop()
        layer[name] = 1 + max(below, default=-1)
        return layer[name]

    if entry not in modules:
        raise BundleError(f"no entry module {entry}.py")
    visit(entry)
    unused = sorted(set(modules) - set(layer))
    if unused:
        raise BundleError(f"{unused[0]}.py: not imported by {entry}.py nor what it imports")
    return [modules[name] for name in sorted(layer, key=lambda name: (layer[name], name))]


def check_names(ordered: list[Module]) -> None:
    """One binding a name in the flat module, and sibling imports of names that exist."""
    owner: dict[str, tuple[Module, int]] = {}
    imported: dict[str, str] = {}
    for module in ordered:
        bindings = {b: what for node in module.imports for b, what in import_bindings(node)}
        for name, line in module.binds.items():
            if name in imported and bindings.get(name) == imported[name]:
                continue  # the same import in another module: hoisted once
            if name in owner:
                first, first_line = owner[name]
                raise BundleError(
                    f"{where(module.path, line)}: {name} is bound at top level in two modules"
                    f" (also {where(first.path, first_line)}); the bundle is one namespace"
                )
            owner[name] = (module, line)
            if name in bindings:
                imported[name] = bindings[name]
    for module in ordered:
        for sibling, names, line in module.siblings:
            defined = {n for n, (m, _) in owner.items() if m.name == sibling} - set(imported)
            for name in names:
                if name not in defined:
                    raise BundleError(
                        f"{where(module.path, line)}: {name} is not defined in {sibling}.py"
                    )


def import_lines(ordered: list[Module]) -> str:
    """Every hoisted import, once; ruff sorts them (ruff_tidy)."""
    lines = dict.fromkeys(ast.unparse(node) for m in ordered for node in m.imports)
    return "\n".join(lines) + "\n"


def ruff_tidy(text: str) -> str:
    """The text as the project's pinned ruff leaves it: imports sorted (isort's rules, rule
    I001), then formatted; the same ruff that lints the repository, so they cannot differ."""
    for command in (["check", "--select", "I", "--fix-only", "--quiet"], ["format"]):
        text = subprocess.run(
            [sys.executable, "-m", "ruff", *command, "--stdin-filename", "handler/stats.py", "-"],
            input=text,
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        ).stdout
    return text


def comment(text: str) -> str:
    return "".join(f"# {line}".rstrip() + "\n" for line in text.splitlines())


def tidy(code: str) -> str:
    """A module's code without its leading and trailing blank lines, and at most two blank
    lines in a row (where its imports were cut)."""
    return re.sub(r"\n{4,}", "\n\n\n", code.strip("\n")) + "\n"


def bundle(package: Path, entry: str) -> str:
    """The one flat module of the package's modules (its __init__.py: the docstring only)."""
    paths = sorted(p for p in package.glob("*.py") if p.name != "__init__.py")
    siblings = {p.stem for p in paths}
    modules = {p.stem: read_module(p, siblings) for p in paths}
    init = package / "__init__.py"
    docstring = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
    ordered = dependency_order(modules, entry)
    check_names(ordered)
    source = package.relative_to(ROOT) if package.is_relative_to(ROOT) else package
    head = (
        f"# Generated by tools/bundle.py from {source}/: do not edit here. Edit the modules"
        " there,\n# then run `make bundle`; tests/unit/test_bundle.py fails while they differ.\n"
        + (f'"""{docstring}"""\n\n' if docstring else "")
        + import_lines(ordered)
    )
    sections = [
        f"# ---- {source}/{module.path.name} ----\n"
        + comment(module.docstring)
        + "\n"
        + tidy(module.code)
        for module in ordered
    ]
    return ruff_tidy(head + "\n" + "\n\n".join(sections))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bundle", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if a bundle is out of date")
    args = parser.parse_args(argv)
    stale = []
    for package, entry, output in BUNDLES:
        try:
            text = bundle(ROOT / package, entry)
        except BundleError as error:
            print(f"tools/bundle.py: {error}", file=sys.stderr)
            return 2
        target = ROOT / output
        if target.exists() and target.read_text(encoding="utf-8") == text:
            continue
        if args.check:
            stale.append(output)
        else:
            target.write_text(text, encoding="utf-8")
            print(f"wrote {output} from {package}/")
    for output in stale:
        print(f"{output} is not the bundle of its sources: run `make bundle`", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
