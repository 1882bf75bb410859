"""The package's import graph: no cycles (imports inside functions included) and no module importing another's private
names; tests use public names. Read from the source with `ast`, so a hidden import inside a function counts too."""
import ast
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / 'conformal_superres'

def _modules()->dict:
    "{dotted module name: file} of the package (the generated index left out)."
    mods = {}
    for f in PKG.rglob('*.py'):
        if f.name == '_modidx.py': continue
        name = '.'.join(f.relative_to(ROOT).with_suffix('').parts)
        mods[name[:-len('.__init__')] if name.endswith('.__init__') else name] = f
    return mods

def _imports(name:str, f:Path, mods:dict):
    "Yield (target module, imported names, line) for every import in the module, at any depth."
    pkg = name if f.name == '__init__.py' else name.rsplit('.', 1)[0]
    for node in ast.walk(ast.parse(f.read_text(encoding='utf-8'))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split('.')[:len(pkg.split('.')) - node.level + 1]
                target = '.'.join(base + ([node.module] if node.module else []))
            else: target = node.module or ''
            names = [a.name for a in node.names]
            # `from pkg import submodule` imports the submodule
            subs = [f'{target}.{n}' for n in names if f'{target}.{n}' in mods]
            yield target, [n for n in names if f'{target}.{n}' not in mods], node.lineno
            for s in subs: yield s, [], node.lineno
        elif isinstance(node, ast.Import):
            for a in node.names: yield a.name, [], node.lineno

def _owner(target:str, mods:dict)->str|None:
    while target and target not in mods:
        if '.' not in target: return None
        target = target.rsplit('.', 1)[0]
    return target

def _graph()->dict:
    mods, edges = _modules(), {}
    for m, f in mods.items():
        for target, _, _ in _imports(m, f, mods):
            t = _owner(target, mods)
            # every module's import runs the package's __init__ first; an edge to it is no dependency of the module
            if t is not None and t != m and t != 'conformal_superres': edges.setdefault(m, set()).add(t)
    return edges

def find_cycles(edges:dict)->list:
    "Each cycle of the graph once, as a list of modules (a depth-first search with colours)."
    state, out = {}, []
    def visit(u, path):
        state[u] = 1; path.append(u)
        for v in sorted(edges.get(u, ())):
            if state.get(v) == 1: out.append(path[path.index(v):] + [v])
            elif not state.get(v): visit(v, path)
        path.pop(); state[u] = 2
    for u in sorted(edges):
        if not state.get(u): visit(u, [])
    return out

def test_cycle_finder_finds_a_cycle():
    "The check itself can fail: a hidden back edge is found."
    test = {'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}
    assert find_cycles(test) == [['a', 'b', 'c', 'a']]
    assert find_cycles({'a': {'b'}, 'b': set()}) == []

def test_no_import_cycles():
    cycles = find_cycles(_graph())
    assert not cycles, "import cycles (move the code to its owner):\n" + '\n'.join(' -> '.join(c) for c in cycles)

def test_no_private_imports_across_modules():
    mods, bad = _modules(), []
    for m, f in mods.items():
        for target, names, line in _imports(m, f, mods):
            t = _owner(target, mods)
            if t is None or t == m: continue
            for n in names:
                if n.startswith('_') and not n.startswith('__'):
                    bad.append(f"{f.relative_to(ROOT)}:{line}: from {target} import {n}")
    assert not bad, "private names imported across modules (make them public in their owner):\n" + '\n'.join(bad)

def test_tests_use_public_names():
    bad = []
    for f in sorted((ROOT / 'tests').glob('*.py')):
        for node in ast.walk(ast.parse(f.read_text(encoding='utf-8'))):
            if isinstance(node, ast.ImportFrom) and (node.module or '').startswith('conformal_superres'):
                bad += [f"{f.name}:{node.lineno}: {node.module}.{a.name}" for a in node.names
                        if a.name.startswith('_') and not a.name.startswith('__')]
    assert not bad, "tests import private names:\n" + '\n'.join(bad)

def test_one_import_line_for_the_readme_example():
    import conformal_superres as csr
    for name in ('ConformalMask', 'as_model', 'make_pairs', 'split_pairs', 'image_folder', 'bundled_photos',
                 'read_calibration', 'calibrate_threshold', 'min_calibration_size', 'Uncertainty', 'Neighbourhood'):
        assert name in csr.__all__ and hasattr(csr, name), name
