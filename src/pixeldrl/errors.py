"""The one exception type for bad user input.

Every reader and every CLI entry point raises :class:`InputError` with a one-line message that
names the offending file (or option) and what is wrong with it; ``pixeldrl.cli.main`` prints it
and exits with status 2 instead of showing a traceback.
"""


class InputError(Exception):
    """Bad user input: a missing, unreadable or inconsistent file, or an invalid option."""


def first_line(e: BaseException, limit: int = 200) -> str:
    """An exception's message as one short line (its type when the message is empty)."""
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:limit]}" if text else type(e).__name__


def check_types(obj, schema: dict, source: str) -> None:
    """InputError naming ``source`` unless ``obj`` is a dict holding every key of ``schema`` with a
    value of its type (a type or tuple of types; ``bool`` never passes for ``int``/``float``).

    For the JSON and checkpoint files the tool reads back (a run's ``config.json``, a store's
    manifest, ``dataset.json``, checkpoints): a hand-edited or foreign file gets one line saying
    which entry is wrong, never a KeyError or TypeError from deep inside.
    """
    if not isinstance(obj, dict):
        raise InputError(f"{source}: expected a JSON object / dict, found {type(obj).__name__}")
    for key, types in schema.items():
        if key not in obj:
            raise InputError(f"{source}: missing entry {key!r}")
        types = types if isinstance(types, tuple) else (types,)
        value = obj[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            names = " or ".join(t.__name__ for t in types)
            raise InputError(f"{source}: entry {key!r} should be {names}, found {value!r:.60}")


def _fits(annotation: str, value) -> bool:
    """Whether a JSON value fits a dataclass field's annotation (as written: ``int``, ``list[int] | None``,
    ``tuple[tuple[int, ...], ...]``); lists stand for tuples, ints for floats, bools for neither."""
    annotation = annotation.strip()
    if annotation.endswith("| None"):
        return value is None or _fits(annotation[: -len("| None")], value)
    if annotation in ("int", "float"):
        ok = (int,) if annotation == "int" else (int, float)
        return isinstance(value, ok) and not isinstance(value, bool)
    if annotation in ("str", "bool"):
        return isinstance(value, {"str": str, "bool": bool}[annotation])
    for outer in ("list[", "tuple["):
        if annotation.startswith(outer):
            inner = annotation[len(outer):-1]
            parts = [p.strip() for p in inner.split(",")] if not inner.startswith("tuple[") else [inner[:inner.rindex("]") + 1]]
            item = parts[0]
            return isinstance(value, (list, tuple)) and all(_fits(item, v) for v in value)
    return True  # an annotation this reader does not know: accept (the dataclass itself checks nothing)


def dataclass_from_dict(cls, d, source: str):
    """``cls(**d)`` for a config dataclass read from a file, each value checked against its field's
    annotation first; InputError naming ``source`` and the entry otherwise. Keys that are no field
    (an older version's retired options) are ignored; missing ones take the field's default."""
    from dataclasses import fields

    if not isinstance(d, dict):
        raise InputError(f"{source}: expected a JSON object, found {type(d).__name__}")
    values = {}
    for f in fields(cls):
        if f.name in d:
            if not _fits(str(f.type), d[f.name]):
                raise InputError(f"{source}: entry {f.name!r} should be {f.type}, found {d[f.name]!r:.60}")
            values[f.name] = d[f.name]
    return cls(**values)
