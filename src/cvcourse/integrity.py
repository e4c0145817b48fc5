"""Kernel side of grading: tests run against the real library, whatever a submission replaced.

A submission runs in the same Python process as the tests that grade it, so it can replace what the
tests call: ``torch.allclose = lambda *a, **k: True``, ``builtins.all``, ``numpy.testing``'s helpers,
``cvcourse.checks``, a method of ``torch.Tensor``, an entry of ``sys.modules``, or a name the setup cell
bound. Before the first cell runs, the grader calls :func:`install`, which snapshots every trusted
module's namespace; before each graded test cell it calls the returned function, which puts back every
object that was replaced, removes what was added to a trusted class, re-runs the setup cell's imports,
and returns the names it repaired. So a replacement gains nothing, and the grader can say what it found.

This module runs inside the learner's kernel and imports nothing but the standard library.
"""

from __future__ import annotations

import builtins
import os
import sys
import types
import warnings

# Module name prefixes whose functions tests rely on.
TRUSTED_PREFIXES = ("builtins", "math", "cmath", "operator", "functools", "itertools", "numbers", "random",
                    "numpy", "torch", "torchvision", "scipy", "sklearn", "skimage", "cvcourse")
# Python classes whose methods tests rely on (a C type cannot be changed; these can).
TRUSTED_CLASSES = ("torch.Tensor", "torch.nn.Module", "torch.nn.Parameter")
# Names the kernel itself rebinds while it runs (ipykernel swaps ``input`` for each request).
VOLATILE = {"builtins": {"input", "_", "__", "___", "_dh", "_oh", "_ih", "get_ipython"}}


def _trusted(name: str) -> bool:
    return name.split(".", 1)[0] in TRUSTED_PREFIXES


def _guarded(key: str, value) -> bool:
    """Whether a namespace entry is something tests call: a public (or dunder) function, class or module.

    Libraries rebind private names and plain data (flags, caches, counters) as they run; those are
    theirs to change, and tests do not call them.
    """
    public = not key.startswith("_") or (key.startswith("__") and key.endswith("__"))
    return public and (callable(value) or isinstance(value, types.ModuleType))


def _resolve(dotted: str):
    module_name, _, attribute = dotted.rpartition(".")
    return getattr(sys.modules[module_name], attribute)


def _library_roots(modules: dict) -> tuple[str, ...]:
    """The folders the trusted top-level packages live in (a submission cannot write there)."""
    roots = set()
    for name, module in modules.items():
        path = getattr(module, "__file__", None)
        if "." not in name and path:
            roots.add(os.path.dirname(os.path.abspath(path)) + os.sep)
    return tuple(sorted(roots))


def _library_wrapper(new, old, roots: tuple[str, ...]) -> bool:
    """A library decorating its own function (``torch._dynamo`` wraps ``torch.manual_seed`` when it
    loads): the new object wraps exactly the old one, and its code lives in a trusted package."""
    code = getattr(new, "__code__", None)
    return (getattr(new, "__wrapped__", None) is old and code is not None
            and os.path.abspath(code.co_filename).startswith(roots))


def install(setup_imports: str, user_ns: dict, extra_modules: tuple[str, ...] = ()):
    """Import the setup cell's modules, snapshot every trusted namespace, and return ``restore()``.

    ``setup_imports``: the import lines of the notebook's own setup cell (from the instructor's copy);
    ``user_ns``: the kernel's user namespace. ``restore()`` returns the sorted names it had to repair.
    """
    exec(compile(setup_imports, "<setup imports>", "exec"), {})  # noqa: S102 (the instructor's own lines)
    for name in extra_modules:
        __import__(name)
    modules = {name: module for name, module in list(sys.modules.items())
               if module is not None and _trusted(name) and isinstance(module, types.ModuleType)}
    with warnings.catch_warnings():  # looking at deprecated objects makes some of them warn
        warnings.simplefilter("ignore")
        namespaces = {name: {k: v for k, v in vars(module).items()
                             if k not in VOLATILE.get(name, ()) and _guarded(k, v)}
                      for name, module in modules.items()}
    classes = {}
    for dotted in TRUSTED_CLASSES:
        try:
            cls = _resolve(dotted)
        except (KeyError, AttributeError):
            continue
        classes[dotted] = (cls, {k: v for k, v in vars(cls).items() if _guarded(k, v)})
    roots = _library_roots(modules)
    real_builtins = builtins
    set_class_attribute, delete_class_attribute = type.__setattr__, type.__delattr__
    missing = object()  # a sentinel no submission can hold

    def restore(_modules=modules, _namespaces=namespaces, _classes=classes, _sys_modules=sys.modules, _guarded=_guarded,
                _user_ns=user_ns, _builtins=real_builtins, _setup=setup_imports, _exec=exec,
                _compile=compile, _sorted=sorted, _vars=vars, _setattr=set_class_attribute,
                _delattr=delete_class_attribute, _missing=missing, _roots=roots,
                _library_wrapper=_library_wrapper) -> list[str]:
        repaired = []
        for name, module in _modules.items():
            if _sys_modules.get(name) is not module:
                _sys_modules[name] = module
                repaired.append(f"sys.modules[{name!r}]")
            current, saved = _vars(module), _namespaces[name]
            for key, value in saved.items():
                now = current.get(key, _missing)
                if now is value:
                    continue
                if _library_wrapper(now, value, _roots):
                    saved[key] = now  # the library's own decoration: keep it, and guard it from now on
                else:
                    current[key] = value
                    repaired.append(f"{name}.{key}")
        for dotted, (cls, saved) in _classes.items():
            current = _vars(cls)
            for key in [k for k, v in current.items() if k not in saved and _guarded(k, v)]:
                _delattr(cls, key)
                repaired.append(f"{dotted}.{key}")
            for key, value in saved.items():
                if current.get(key, _missing) is not value:
                    _setattr(cls, key, value)
                    repaired.append(f"{dotted}.{key}")
        if _user_ns.get("__builtins__") not in (_builtins, _vars(_builtins)):
            _user_ns["__builtins__"] = _builtins
            repaired.append("__builtins__")
        _exec(_compile(_setup, "<setup imports>", "exec"), _user_ns)  # rebind the setup cell's names
        return _sorted(set(repaired))

    return restore


def cap_streams(limit: int, streams=None) -> None:
    """Keep at most ``limit`` characters written to each of ``streams`` (default: stdout and stderr).

    A submission printing 100 MB would otherwise make the grader hold, pass on and store all of it.
    """
    for stream in streams or (sys.stdout, sys.stderr):
        write, used = stream.write, [0]

        def capped(text, _write=write, _used=used):
            if _used[0] >= limit:
                return len(text)
            _used[0] += len(text)
            if _used[0] > limit:
                text = text[: len(text) - (_used[0] - limit)] + "\n... output limit reached: the rest is not kept ...\n"
            return _write(text)

        stream.write = capped


def import_lines(source: str) -> str:
    """The top-level ``import`` and ``from ... import`` statements of a cell, as source."""
    import ast

    tree = ast.parse(source)
    lines = source.splitlines()
    return "\n".join(
        "\n".join(lines[node.lineno - 1: node.end_lineno])
        for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))
    )
