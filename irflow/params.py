"""One definition per step parameter: typed classes that make the CLI, the plan and the key agree.

Each step declares its parameters once, as a pydantic model (:class:`StepParams`) with defaults and
constraints. From that one class come

* the click options of ``irflow <step>`` (same names, same defaults, same choices; constraint
  violations are reported per option by the same validators the config uses),
* the command line the plan hands to Snakemake (:meth:`StepParams.args`),
* the store key's parameters (:meth:`StepParams.key_params`), and
* the config's fields, which reuse these fields (:func:`field_of`) instead of restating defaults.

Inputs (other artifacts) are declared beside the parameters (:class:`Input`): the CLI turns them
into path options, checks that each names a complete artifact of the expected step (and kind), and
the plan renders them from its nodes. A model option (``ref=True``) takes a hub id, a directory or
a train artifact; an artifact enters the key as an input, so its key chains in.

:func:`key_from_argv` is the one function that turns a command line into a key: the CLI calls it
with a resolver that reads (verified) input manifests, the plan test with one that looks the
plan's own nodes up, so "the plan's command recomputes the plan's key" is checked without running.
"""

from __future__ import annotations

import copy
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import IrflowError

#: ``--stemmer none``: how an optional value that defaults to something is switched off on a command line
NONE = "none"
_ARTIFACT = re.compile(r"[0-9a-f]{16}")


@dataclass(frozen=True)
class Input:
    """An artifact a step reads: ``--option DIR`` (``multiple``: repeated; ``named``: ``NAME=DIR``)."""

    name: str
    option: str
    step: str | tuple[str, ...]
    help: str = ""
    required: bool = True
    multiple: bool = False
    named: bool = False
    min_count: int = 1
    kind: str | None = None  # for prepare artifacts: docs | queries

    @property
    def steps(self) -> tuple[str, ...]:
        return (self.step,) if isinstance(self.step, str) else self.step


class StepParams(BaseModel):
    """The parameters of one step. Subclasses set ``step``, ``inputs`` and their fields.

    Field metadata (``json_schema_extra``): ``key=False`` keeps a field out of the key (how a
    run is carried out, not what it computes); ``ref=True`` marks a model option that may name an
    artifact; ``cli`` overrides the option name; ``hidden`` hides it from ``--help``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    step: ClassVar[str]
    inputs: ClassVar[tuple[Input, ...]] = ()

    def check_inputs(self, given: set[str]) -> None:
        """Refuse a combination of parameters and inputs that cannot run (before any input is read)."""

    # ---------------------------------------------------------------------------------- key

    def key_params(self, ctx: KeyContext | None = None) -> dict:
        """Every key field, with artifact models replaced by ``{"input": name}``.

        ``ctx.refs`` maps a model value to the input name it entered as; ``ctx.inputs`` describes
        the inputs where a key depends on them (search: the index's type; evaluate: the systems'
        names). Subclasses drop what does not change the computation.
        """
        from .models.resolve import identity

        refs = ctx.refs if ctx else {}
        out = {}
        for name, f in type(self).model_fields.items():
            meta = f.json_schema_extra or {}
            if meta.get("key", True) is False:
                continue
            v = getattr(self, name)
            if meta.get("ref"):
                v = [_ref_key(x, refs, identity) for x in v] if isinstance(v, (list, tuple)) else (
                    None if v is None else _ref_key(v, refs, identity))
            out[name] = list(v) if isinstance(v, tuple) else v
        return out

    def ref_values(self) -> list[str]:
        """The values of the model options (each may name an artifact)."""
        out = []
        for name, f in type(self).model_fields.items():
            if (f.json_schema_extra or {}).get("ref"):
                v = getattr(self, name)
                out += [x for x in (v if isinstance(v, (list, tuple)) else [v]) if x is not None]
        return out

    # ---------------------------------------------------------------------- command line

    def args(self) -> list[str]:
        """This object as command-line options: every field whose value differs from "absent"."""
        out: list[str] = []
        for name, f in type(self).model_fields.items():
            meta = f.json_schema_extra or {}
            v = getattr(self, name)
            opt = _option(name, meta)
            if _is_bool(f.annotation):
                out.append(opt if v else "--no-" + opt[2:])
            elif v is None:
                if f.default is not None:
                    out += [opt, NONE]
            elif isinstance(v, (list, tuple)):
                for x in v:
                    out += [opt, _fmt(x)]
            else:
                out += [opt, _fmt(v)]
        return out

    @classmethod
    def options(cls, fn):
        """Decorate a click command with one option per field (and per input)."""
        import click

        for name, f in reversed(list(cls.model_fields.items())):
            meta = f.json_schema_extra or {}
            opt = _option(name, meta)
            ann = f.annotation
            kw: dict[str, Any] = {"help": f.description or "", "hidden": bool(meta.get("hidden"))}
            required = f.is_required()
            default = f.get_default(call_default_factory=True)
            if _is_bool(ann):
                fn = click.option(f"{opt}/--no-{opt[2:]}", name, default=f.default, show_default=True, **kw)(fn)
                continue
            base, multiple = _base(ann)
            if multiple:
                kw["multiple"] = True
                kw["default"] = None if required else tuple(default or ())
            else:
                kw["default"] = None if required else default
            choices = _literal(base)
            # an explicit type: click would otherwise guess from the default (0.5 -> FLOAT, so "40" -> 40.0)
            kw["type"] = click.Choice(choices) if choices else {int: click.INT, float: click.FLOAT, bool: click.BOOL}.get(
                base, click.STRING)
            kw["show_default"] = not required and default is not None
            fn = click.option(opt, name, required=required and not multiple, **kw)(fn)
        for inp in reversed(cls.inputs):
            fn = click.option(inp.option, inp.name, multiple=inp.multiple, required=inp.required and not inp.multiple,
                              metavar="NAME=DIR" if inp.named else "DIR", help=inp.help or f"A {'/'.join(inp.steps)} "
                              "artifact" + (f" of kind {inp.kind}" if inp.kind else "") + ".")(fn)
        return fn

    @classmethod
    def from_options(cls, values: Mapping[str, Any]) -> StepParams:
        """Validate option values with the class's constraints; one line per bad option."""
        data = {}
        for name, f in cls.model_fields.items():
            if name not in values:
                continue
            v = values[name]
            if isinstance(v, tuple):
                v = list(v)
            if v == NONE and f.default is not None and type(None) in typing.get_args(f.annotation):
                v = None
            data[name] = v
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise IrflowError(validation_message(e, {n: _option(n, f.json_schema_extra or {})
                                                     for n, f in cls.model_fields.items()})) from None


Precision = Literal["fp32", "bf16", "fp16", "fp64"]


class WithPrecision(StepParams):
    """Steps that run a model: the autocast precision is part of the key (bf16 and fp32 numbers
    differ), so one key never holds different numbers on different machines."""

    precision: Precision = Field("bf16", description="Autocast precision: fp32, bf16 (fast on recent GPUs and "
                                 "CPUs with AVX512-BF16/AMX), fp16 (GPUs), or fp64 (float64 weights and "
                                 "arithmetic, for exactness checks; slow).")


def validation_message(e: ValidationError, names: Mapping[str, str] | None = None) -> str:
    lines = []
    for err in e.errors():
        loc = [str(x) for x in err["loc"]]
        where = (names or {}).get(loc[0], loc[0]) if loc else ""
        msg = "unknown option" if err["type"] == "extra_forbidden" else err["msg"]
        msg = msg.removeprefix("Value error, ")
        if loc and isinstance(err.get("input"), (int, float, str)) and err["type"] != "value_error":
            msg += f", got {err['input']!r}" if isinstance(err["input"], str) else f", got {err['input']}"
        lines.append(f"{where}: {msg}" if where else msg)
    return "; ".join(lines)


def field_of(cls: type[BaseModel], name: str, **overrides):
    """The FieldInfo of ``cls.name``, for a config class that exposes the same parameter.

    A copy, so that pydantic's collection of one class cannot alter the other's field; the
    default, constraints and help stay defined in one place.
    """
    f = copy.deepcopy(cls.model_fields[name])
    for k, v in overrides.items():
        setattr(f, k, v)
    return f


# ------------------------------------------------------------------------ argv -> key


def resolve_inputs(cls: type[StepParams], values: Mapping[str, Any]) -> dict[str, str]:
    """Input name -> path from option values (``multiple``: name0, name1, ...; ``named``: name:NAME)."""
    out: dict[str, str] = {}
    for inp in cls.inputs:
        v = values.get(inp.name)
        if not v:
            if inp.required:
                raise IrflowError(f"{inp.option} is required")
            continue
        if not inp.multiple:
            out[inp.name] = str(v)
            continue
        if len(v) < inp.min_count:
            raise IrflowError(f"{inp.option} needs at least {inp.min_count} artifacts, got {len(v)}")
        for i, x in enumerate(v):
            if inp.named:
                n, sep, path = str(x).partition("=")
                if not sep or not n or not path:
                    raise IrflowError(f"{inp.option} expects NAME=DIR, got {x!r}")
                if f"{inp.name}:{n}" in out:
                    raise IrflowError(f"{inp.option} names {n!r} twice")
                out[f"{inp.name}:{n}"] = path
            else:
                out[f"{inp.name}{i}"] = str(x)
    return out


def input_spec(cls: type[StepParams], name: str) -> Input:
    base = name.split(":")[0].rstrip("0123456789") if name not in {i.name for i in cls.inputs} else name
    for inp in cls.inputs:
        if inp.name in (name, base):
            return inp
    raise KeyError(name)


@dataclass
class KeyContext:
    """What a key may depend on besides the parameters: the inputs, and which models are artifacts."""

    inputs: dict[str, Described]
    refs: dict[str, str]


@dataclass
class Described:
    """What a resolver knows about an input artifact: its key, step and parameters."""

    key: str
    step: str
    params: dict


def key_from_values(cls: type[StepParams], values: Mapping[str, Any], describe: Callable[[str], Described | None]):
    """(params object, key params, input paths, input keys) of a command's option values.

    ``describe(path)`` says what artifact a path is, or None for a path that is not one (a model
    directory). The CLI reads verified manifests; the plan test looks the plan's nodes up.
    """
    p = cls.from_options(values)
    paths = resolve_inputs(cls, values)
    p.check_inputs(set(paths))
    return (p, *keyed(p, paths, describe))


def keyed(p: StepParams, paths: Mapping[str, str], describe: Callable[[str], Described | None]):
    """(key params, input paths, input keys) of a params object and its input paths.

    Each input must be a complete artifact of the expected step (and kind); a model option that
    names an artifact becomes an input ``model<i>`` and enters the key by that input.
    """
    cls = type(p)
    paths = dict(paths)
    info: dict[str, Described] = {}
    for name, path in paths.items():
        d = describe(path)
        inp = input_spec(cls, name)
        if d is None:
            raise IrflowError(f"{inp.option} {path}: not a complete irflow artifact (no manifest.json)")
        if d.step not in inp.steps:
            raise IrflowError(f"{inp.option} {path}: a {d.step} artifact, expected {' or '.join(inp.steps)}")
        if inp.kind and d.params.get("kind") != inp.kind:
            raise IrflowError(f"{inp.option} {path}: prepared {d.params.get('kind')}, expected {inp.kind}")
        info[name] = d
    refs: dict[str, str] = {}
    for v in p.ref_values():
        if v in refs:
            continue
        d = describe(v)
        if d is not None:
            name = f"model{len(refs)}"
            refs[v] = name
            paths[name] = v
            info[name] = d
    return p.key_params(KeyContext(info, refs)), paths, {n: d.key for n, d in info.items()}


# ------------------------------------------------------------------------------ helpers


def _ref_key(v: str, refs: Mapping[str, str], identity) -> Any:
    """An artifact model by its input, ``bi-encoder:<id>`` (a bi-encoder as teacher) and others by identity."""
    if v in refs:
        return {"input": refs[v]}
    if v.startswith("bi-encoder:"):
        return {"bi-encoder": identity(v.removeprefix("bi-encoder:"))}
    return identity(v)


def _option(name: str, meta: Mapping) -> str:
    return meta.get("cli") or "--" + name.replace("_", "-")


def _fmt(v) -> str:
    return repr(v) if isinstance(v, float) else str(v)


def _is_bool(ann) -> bool:
    return ann is bool


def _base(ann):
    """(element type, multiple) of an annotation, Optional stripped."""
    args = [a for a in typing.get_args(ann) if a is not type(None)] if _is_union(ann) else None
    if args is not None and len(args) == 1:
        ann = args[0]
    origin = typing.get_origin(ann)
    if origin in (list, tuple):
        return typing.get_args(ann)[0], True
    return ann, False


def _is_union(ann) -> bool:
    return typing.get_origin(ann) in (typing.Union, types.UnionType)


def _literal(ann) -> list[str] | None:
    if typing.get_origin(ann) is Literal:
        return [str(a) for a in typing.get_args(ann)]
    return None


def artifact_path_key(path: str) -> tuple[str, str] | None:
    """(step, key) when ``path`` has the shape of a store artifact (``.../<step>/<key>``)."""
    p = Path(path)
    if _ARTIFACT.fullmatch(p.name) and p.parent.name:
        return p.parent.name, p.name
    return None
