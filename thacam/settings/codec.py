"""The TOML codec, generic over settings dataclasses: parse, decode (validated, with errors
naming the file, the key path and what is expected), encode, render a documented file, and set
one key from a TOML-typed value (command-line flags, the panel).

Every check of a value is thacam.settings' own validator; this module adds what only files have:
tables, relative paths, secrets that must not be there, keys that are not settings.
Must not import any stage; tomlkit only when writing.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import os
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import ProfileError, SettingsError
from . import (PASSWORD_ENV, SECRET_KEYS, FieldInfo, Settings, Spec, _Bad, _check_scalar,
               _describe_value, describe, field_doc, fields_of)

__all__ = ["decode", "parse_toml", "encode", "flatten", "render_toml", "toml_value", "set_raw",
           "changes"]


# ------------------------------------------------------------------------------- decoding

@dataclass(frozen=True)
class _Ctx:
    file: str                       # what ProfileError names as the source ("profiles/x.toml")
    base_dir: Path | None           # relative paths resolve against this (None = cwd)
    check_files: bool = True
    derived: Mapping[str, str] = field(default_factory=dict)  # key -> the key it always equals


def _secret(k: str, key: str, ctx: _Ctx) -> None:
    if k.lower() in SECRET_KEYS:
        raise ProfileError(ctx.file, key, "a password is never read from a profile file; delete "
                           f"this key and set the environment variable {PASSWORD_ENV} instead")


def _decode_path(p: Path, info: FieldInfo, raw: str, key: str, ctx: _Ctx) -> Path:
    p = p.expanduser()
    if not p.is_absolute() and ctx.base_dir is not None:
        p = ctx.base_dir / p
    p = Path(os.path.normpath(p))
    if ctx.check_files and info.meta.get("must_exist") and not p.exists():
        where = (f" (a relative path is relative to {ctx.base_dir})"
                 if not Path(raw).expanduser().is_absolute() and ctx.base_dir else "")
        raise ProfileError(ctx.file, key, f"file not found: {p}{where}; fix the path or run "
                           "`thacam profile init IMG` for the right image")
    return p


def _decode_value(v: Any, spec: Spec, info: FieldInfo, key: str, ctx: _Ctx) -> Any:
    def scalar(x: Any, sub: str) -> Any:
        try:
            out = _check_scalar(x, spec.item if spec.kind in ("tuple",) else spec, info)
        except _Bad as exc:
            raise ProfileError(ctx.file, sub, exc.problem) from None
        return _decode_path(out, info, x, sub, ctx) if isinstance(out, Path) else out

    if spec.kind == "table":
        if not isinstance(v, dict):
            raise ProfileError(ctx.file, key, f"expected a table ([{key}]), got "
                               f"{_describe_value(v)}")
        return _decode_table(spec.tp, v, key, ctx)
    if spec.kind == "tuple" and info.meta.get("names"):
        names = tuple(info.meta["names"])
        if not isinstance(v, dict):
            raise ProfileError(ctx.file, key, f"expected a table of {len(names)} named numbers "
                               f"({names[0]} = ..., ...), got {_describe_value(v)}")
        for k in v:
            if k not in names:
                close = difflib.get_close_matches(k, names, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise ProfileError(ctx.file, f"{key}.{k}", f"unknown name {k!r}; {hint}(fix or "
                                   "remove it)")
        # a name left out keeps its default
        return tuple(scalar(v[n], f"{key}.{n}") if n in v else d
                     for n, d in zip(names, info.default))
    if spec.kind == "tuple":
        if not isinstance(v, list) or (spec.length is not None and len(v) != spec.length):
            got = f"{len(v)} values" if isinstance(v, list) else _describe_value(v)
            raise ProfileError(ctx.file, key, f"expected {describe(spec, info.range)}, got {got}")
        return tuple(scalar(x, f"{key}[{i}]") for i, x in enumerate(v))
    if spec.kind == "map":
        if not isinstance(v, dict):
            raise ProfileError(ctx.file, key, f"expected a table, got {_describe_value(v)}")
        allowed = info.meta.get("keys")
        out = {}
        for k, item in v.items():
            sub = f"{key}.{k}"
            _secret(k, sub, ctx)
            if allowed is not None and k not in allowed:
                raise ProfileError(ctx.file, sub, f"unexpected key {k!r}; the keys of [{key}] are "
                                   + ", ".join(allowed))
            if spec.key_int:
                try:
                    k = int(k)
                except ValueError:
                    raise ProfileError(ctx.file, sub, "expected an integer key") from None
            item_info = dataclasses.replace(info, meta={}, range=None)
            out[k] = _decode_value(item, spec.item, item_info, sub, ctx)
        return out
    return scalar(v, key)


def _decode_table(cls: type, table: Mapping[str, Any], prefix: str, ctx: _Ctx) -> Any:
    infos = {i.name: i for i in fields_of(cls)}
    kwargs = {}
    for k, v in table.items():
        key = f"{prefix}.{k}" if prefix else k
        _secret(k, key, ctx)
        info = infos.get(k)
        if info is None and key in ctx.derived:
            set_by = ctx.derived[key]
            raise ProfileError(ctx.file, key, f"not a setting of its own: it always equals "
                               f"{set_by}; delete it and set {set_by} instead")
        if info is None:
            close = difflib.get_close_matches(k, list(infos), n=1, cutoff=0.6)
            where = f"[{prefix}]" if prefix else "the top level"
            if close:
                raise ProfileError(ctx.file, key, f"unknown key {k!r}; did you mean "
                                   f"{close[0]!r}? (fix or remove it)")
            raise ProfileError(ctx.file, key, f"unknown key {k!r}; the keys of {where} are "
                               + ", ".join(infos))
        kwargs[k] = _decode_value(v, info.spec, info, key, ctx)
    for info in infos.values():
        if info.required and info.name not in kwargs:
            key = f"{prefix}.{info.name}" if prefix else info.name
            raise ProfileError(ctx.file, key, f"missing; [{prefix}] needs {info.name} = "
                               f"{describe(info.spec, info.range)}")
    try:
        obj = cls(**kwargs)
        validate = getattr(obj, "validate", None)
        if callable(validate) and not isinstance(obj, Settings):
            validate()      # a plain dataclass with its own validate()
        return obj
    except SettingsError as exc:
        # The class's own checks (a field, or a rule between fields): name the key they name.
        key = f"{prefix}.{exc.field}" if prefix else exc.field
        raise ProfileError(ctx.file, key, exc.problem) from None
    except (ValueError, TypeError) as exc:
        raise ProfileError(ctx.file, prefix or None, str(exc)) from None


def decode(cls: type, table: Mapping[str, Any], *, file: str = "<settings>",
           base_dir: Path | None = None, check_files: bool = True, prefix: str = "",
           derived: Mapping[str, str] | None = None) -> Any:
    """A parsed TOML table -> a validated ``cls`` (a settings dataclass, nested ones included).

    ``base_dir``: relative paths resolve against it. ``derived``: key paths that are not settings
    of their own but always equal another key (named in the error when a file sets them).

    Raises:
        ProfileError: naming ``file``, the key path and what is expected.
    """
    return _decode_table(cls, table, prefix, _Ctx(file, base_dir, check_files, derived or {}))


def parse_toml(text: str, file: str) -> dict[str, Any]:
    """TOML text -> plain dict. Raises ProfileError with the line and column of a syntax error."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = None
    if tomllib is not None:
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            msg = str(exc)
            m = re.search(r"\s*\(at line (\d+), column (\d+)\)$", msg)
            if m:
                raise ProfileError(file, None, f"invalid TOML at line {m[1]}, column {m[2]}: "
                                   f"{msg[:m.start()]}; fix the syntax") from None
            raise ProfileError(file, None, f"invalid TOML: {msg}; fix the syntax") from None
    import tomlkit
    from tomlkit.exceptions import ParseError
    try:
        return tomlkit.parse(text).unwrap()
    except ParseError as exc:
        raise ProfileError(file, None, f"invalid TOML at line {exc.line}, column {exc.col + 1}: "
                           f"{str(exc).split(' at line')[0]}; fix the syntax") from None


# ------------------------------------------------------------------------------- encoding

def _encode_value(v: Any, spec: Spec, base_dir: Path | None,
                  names: Sequence[str] | None = None) -> Any:
    k = spec.kind
    if k == "table":
        return encode(v, base_dir)
    if k == "tuple" and names:
        return {n: _encode_value(x, spec.item, base_dir) for n, x in zip(names, v)}
    if k == "tuple":
        return [_encode_value(x, spec.item, base_dir) for x in v]
    if k == "map":
        return {str(key): _encode_value(x, spec.item, base_dir) for key, x in v.items()}
    if v is None:
        return ""
    if k == "choice":
        return v.value if isinstance(v, enum.Enum) else v
    if k == "path":
        return _relative(Path(v), base_dir)
    if k == "float":
        return float(v)
    return v


def _relative(p: Path, base_dir: Path | None) -> str:
    """A path as written in a file: relative to the file when it lives nearby."""
    if base_dir is None or not p.is_absolute():
        return str(p)
    try:
        rel = Path(os.path.relpath(p, base_dir))
    except ValueError:  # another drive on Windows
        return str(p)
    # Beside or below the file, or one level up (profiles/../weights/...): keep it relative so
    # the repository can move; further away an absolute path is clearer.
    if rel.parts[:2] == ("..", ".."):
        return str(p)
    return rel.as_posix()


def encode(obj: Any, base_dir: Path | None = None) -> dict[str, Any]:
    """A settings dataclass -> plain TOML-ready dict (paths relative to ``base_dir``)."""
    out = {}
    for i in fields_of(type(obj)):
        value = getattr(obj, i.name)
        if value is None and i.spec.optional and i.spec.kind not in ("str", "path"):
            continue  # no TOML null: an unset optional number is an absent key
        out[i.name] = _encode_value(value, i.spec, base_dir, i.meta.get("names"))
    return out


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists are leaves."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, Mapping):
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


def toml_value(v: Any) -> str:
    """One value as TOML text."""
    import tomlkit
    return tomlkit.item(v).as_string()


def _wrap_comment(text: str, indent: str = "") -> list[str]:
    return [f"{indent}# {line}" if line else f"{indent}#"
            for para in text.split("\n")
            for line in (textwrap.wrap(para, 97 - len(indent), break_on_hyphens=False,
                                       break_long_words=False) or [""])]


def _class_doc(cls: type) -> str:
    doc = (cls.__doc__ or "").strip()
    if not doc or doc.startswith(f"{cls.__name__}("):  # dataclass's generated signature
        return ""
    return " ".join(doc.split("\n\n")[0].split())


def _key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else toml_value(k)


def render_toml(root: Any, *, base_dir: Path | None = None, docs: bool = True,
                header: str = "", annotate: Mapping[str, str] | None = None) -> str:
    """A settings tree -> TOML text. ``docs`` puts each key's help above it; ``annotate`` appends
    a trailing comment per key path (``thacam profile show`` says where each value came from)."""
    lines: list[str] = _wrap_comment(header) + [""] if header else []
    documented: set[tuple[Any, str]] = set()

    def table(obj: Any, name: str, doc: str) -> None:
        cls = type(obj)
        infos = fields_of(cls)

        def is_sub(i: FieldInfo) -> bool:
            return i.spec.kind in ("table", "map") or bool(i.meta.get("names"))
        scalars = [i for i in infos if not is_sub(i)]
        subs = [i for i in infos if is_sub(i)]
        if name and (scalars or not subs):
            if lines and lines[-1] != "":
                lines.append("")
            if docs and doc:
                lines.extend(_wrap_comment(doc))
            lines.append(f"[{name}]")
        for info in scalars:
            key = f"{name}.{info.name}" if name else info.name
            if docs and (cls, info.name) not in documented:
                lines.extend(_wrap_comment(field_doc(info)))
                documented.add((cls, info.name))
            raw = getattr(obj, info.name)
            if raw is None and info.spec.optional and info.spec.kind not in ("str", "path"):
                lines.append(f"# {info.name} = ...   (not set)")
                continue
            value = _encode_value(raw, info.spec, base_dir)
            note = f"  # {annotate[key]}" if annotate and key in annotate else ""
            lines.append(f"{info.name} = {toml_value(value)}{note}")
        for info in subs:
            key = f"{name}.{info.name}" if name else info.name
            sub_doc = field_doc(info) if info.help else _class_doc(info.spec.tp or object)
            value = getattr(obj, info.name)
            if info.spec.kind == "table":
                table(value, key, info.help or _class_doc(info.spec.tp))
            elif info.spec.kind == "tuple":
                named = dict(zip(info.meta["names"], value))
                mapping(named, dataclasses.replace(info, spec=Spec("map", item=info.spec.item)),
                        key, field_doc(info))
            else:
                mapping(value, info, key, sub_doc)

    def mapping(value: Mapping, info: FieldInfo, name: str, doc: str) -> None:
        item = info.spec.item
        if lines and lines[-1] != "":
            lines.append("")
        if docs and doc and (id(info), "") not in documented:
            lines.extend(_wrap_comment(doc))
            documented.add((id(info), ""))
        if item.kind == "table":
            if docs:
                lines.append("")
            if not value:
                lines.append(f"# [{name}.1] ...")
            first = True
            for k, v in value.items():
                table(v, f"{name}.{k}", _class_doc(item.tp) if first else "")
                first = False
            return
        lines.append(f"[{name}]")
        for k, v in value.items():
            full = f"{name}.{k}"
            note = f"  # {annotate[full]}" if annotate and full in annotate else ""
            lines.append(f"{_key(str(k))} = {toml_value(_encode_value(v, item, base_dir))}{note}")

    table(root, "", "")
    return "\n".join(lines).rstrip("\n") + "\n"


def set_raw(root: Any, key: str, raw: Any, *, source: str, check_files: bool = True,
            base_dir: Path | None = None, derived: Mapping[str, str] | None = None) -> Any:
    """``root`` with ``key`` set from a TOML-typed value, validated exactly like a file (errors
    name ``source``, e.g. "flag --device")."""
    tree = encode(root, None)
    node = tree
    parts = key.split(".")
    for p in parts[:-1]:
        if not isinstance(node, dict):
            raise ProfileError(source, key, "not a settings key; see profiles/default.toml")
        node = node.setdefault(p, {})
    if not isinstance(node, dict):
        raise ProfileError(source, key, "not a settings key; see profiles/default.toml")
    node[parts[-1]] = raw
    return decode(type(root), tree, file=source, base_dir=base_dir or Path.cwd(),
                  check_files=check_files, derived=derived)


_ABSENT = object()


def changes(tree: Any, base: Any, base_dir: Path | None = None) -> list[tuple[str, Any]]:
    """(key path, encoded value) for every leaf where ``tree`` differs from ``base``."""
    a = flatten(encode(base, base_dir))
    b = flatten(encode(tree, base_dir))
    return [(k, v) for k, v in b.items() if a.get(k, _ABSENT) != v]


