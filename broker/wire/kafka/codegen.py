"""Compile a schema class, for one version, into a reader and a writer function.

Interpreting the field table for every message would cost a dict lookup and a type dispatch per
field; instead, as `dataclasses` does for `__init__`, we generate the source of one function per
(struct, version, flexible) once at import and exec it. Consecutive fixed-width fields become one
`struct.Struct` call; every length is bounds-checked before use (see primitives). A reader
looks like

    def read_PartitionProduceData_v3(buf, pos, end):
        if end - pos < 4: raise short(pos, 4, end, 'PartitionProduceData.index')
        (f_index,) = _s0(buf, pos)
        pos += 4
        f_records, pos = read_records(buf, pos, end, True, 'PartitionProduceData.records')
        o = new_object(_cls)
        _set_index(o, f_index)
        _set_records(o, f_records)
        return o, pos

and a writer appends buffers through `app`:

    def write_PartitionProduceData_v3(o, app):
        app(_s0(o.index))
        write_records(app, o.records, True, 'PartitionProduceData.records')

Identical layouts (a struct unchanged across versions) share one compiled function.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, TypeAlias

from broker.wire.errors import LocalProtocolError
from broker.wire.kafka import primitives as P
from broker.wire.kafka.schema import ArrayOf, FieldSpec, Kind, in_versions, struct_fields

__all__ = ["Compiler", "Reader", "Writer"]

Reader: TypeAlias = Callable[[memoryview, int, int], tuple[Any, int]]
Writer: TypeAlias = Callable[[Any, P.Append], None]

# Fixed-width kinds: struct format character and size in bytes.
_FIXED: dict[Kind, tuple[str, int]] = {
    Kind.INT8: ("b", 1), Kind.INT16: ("h", 2), Kind.INT32: ("i", 4), Kind.INT64: ("q", 8),
    Kind.UINT16: ("H", 2), Kind.UINT32: ("I", 4), Kind.FLOAT64: ("d", 8), Kind.BOOL: ("?", 1),
}

# Variable-width primitives: (reader, compact reader, writer, compact writer, takes nullable).
_VARIABLE: dict[Kind, tuple[str, str, str, str, bool]] = {
    Kind.STRING: ("read_string", "read_compact_string", "write_string", "write_compact_string",
                  True),
    Kind.BYTES: ("read_bytes", "read_compact_bytes", "write_bytes", "write_compact_bytes", True),
    Kind.RECORDS: ("read_records", "read_compact_records", "write_records",
                   "write_compact_records", True),
    Kind.VARINT: ("read_varint", "read_varint", "write_varint", "write_varint", False),
    Kind.VARLONG: ("read_varlong", "read_varlong", "write_varlong", "write_varlong", False),
    Kind.UUID: ("read_uuid", "read_uuid", "write_uuid", "write_uuid", False),
}

_HELPERS = {name: getattr(P, name) for name in P.__all__}
_HELPERS.update(struct=struct, LocalProtocolError=LocalProtocolError, new_object=object.__new__)


def _min_primitive_bytes(kind: Kind, flexible: bool) -> int:
    if kind in _FIXED:
        return _FIXED[kind][1]
    if kind is Kind.UUID:
        return 16
    if kind is Kind.STRING:
        return 1 if flexible else 2
    if kind in (Kind.BYTES, Kind.RECORDS):
        return 1 if flexible else 4
    return 1  # varint, varlong


class _Source:
    """Lines of one generated function plus the constants its globals hold."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.ns: dict[str, Any] = dict(_HELPERS)

    def const(self, value: Any) -> str:
        name = f"_c{len(self.ns)}"
        self.ns[name] = value
        return name

    def add(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)

    def build(self, name: str, args: str) -> Any:
        text = f"def {name}({args}):\n" + "\n".join(self.lines or ["    pass"]) + "\n"
        exec(compile(text, f"<kafka codec {name}>", "exec"), self.ns)  # noqa: S102
        fn = self.ns[name]
        fn.source = text  # for reading what was generated: print(CODECS[0][3].read_request.source)
        return fn


class Compiler:
    """Compiles and memoizes readers and writers; one instance builds the codec table at import
    and is then dropped, so no compile state lives on at run time."""

    def __init__(self) -> None:
        self._readers: dict[tuple[Any, ...], Reader] = {}
        self._writers: dict[tuple[Any, ...], Writer] = {}
        self._layouts: dict[tuple[type, int, bool], Any] = {}

    # ---- layout ---------------------------------------------------------------------------
    @staticmethod
    def split(cls: type, version: int, flexible: bool) -> tuple[list[FieldSpec], list[FieldSpec]]:
        """(regular fields, tagged fields) of `cls` present in `version`, in wire order."""
        regular, tagged = [], []
        for s in struct_fields(cls):
            if not in_versions(version, s.versions):
                continue
            if flexible and s.tag is not None and in_versions(version, s.tagged):
                tagged.append(s)
            else:
                regular.append(s)
        tagged.sort(key=lambda s: s.tag or 0)
        return regular, tagged

    def layout(self, t: Any, version: int, flexible: bool) -> Any:
        """A hashable description of the bytes `t` takes in `version`: equal layouts compile to
        the same code."""
        if isinstance(t, Kind):
            return t
        if isinstance(t, ArrayOf):
            return ("[]", self.layout(t.item, version, flexible))
        key = (t, version, flexible)
        found = self._layouts.get(key)
        if found is None:
            regular, tagged = self.split(t, version, flexible)
            found = self._layouts[key] = (t, flexible) + tuple(
                (s.name, self.layout(s.type, version, flexible),
                 in_versions(version, s.nullable), s.tag if s in tagged else None)
                for s in regular + tagged
            )
        return found

    def min_bytes(self, t: Any, version: int, flexible: bool) -> int:
        """The fewest bytes a value of `t` takes: bounds array counts by the bytes left."""
        if isinstance(t, Kind):
            return _min_primitive_bytes(t, flexible)
        if isinstance(t, ArrayOf):
            return 1 if flexible else 4
        regular, _ = self.split(t, version, flexible)
        return sum(self.min_bytes(s.type, version, flexible) for s in regular) + int(flexible)

    # ---- readers --------------------------------------------------------------------------
    def reader(self, cls: type, version: int, flexible: bool) -> Reader:
        key = self.layout(cls, version, flexible)
        found = self._readers.get(key)
        if found is None:
            found = self._readers[key] = self._compile_reader(cls, version, flexible)
        return found

    def _compile_reader(self, cls: type, version: int, flexible: bool) -> Reader:
        regular, tagged = self.split(cls, version, flexible)
        src = _Source()
        run: list[FieldSpec] = []
        for s in regular:
            if isinstance(s.type, Kind) and s.type in _FIXED:
                run.append(s)
                continue
            self._read_fixed_run(src, cls, run)
            run = []
            self._read_field(src, cls, s, version, flexible, 1)
        self._read_fixed_run(src, cls, run)
        if flexible:
            self._read_tagged(src, cls, tagged, version)
        self._construct(src, cls, regular + tagged)
        return src.build(f"read_{cls.__name__}_v{version}", "buf, pos, end")  # type: ignore[no-any-return]

    @staticmethod
    def _construct(src: _Source, cls: type, present: list[FieldSpec]) -> None:
        """Build the instance by setting its slots: a frozen dataclass's __init__ goes through
        object.__setattr__ per field and costs twice as much on the Produce hot path. Fields
        absent from this version get their schema default, as __init__ would give them."""
        src.add(1, f"o = new_object({src.const(cls)})")
        names = {s.name for s in present}
        for s in struct_fields(cls):
            setter = src.const(cls.__dict__[s.name].__set__)
            value = f"f_{s.name}" if s.name in names else src.const(s.default)
            src.add(1, f"{setter}(o, {value})")
        src.add(1, "return o, pos")

    @staticmethod
    def _read_fixed_run(src: _Source, cls: type, run: list[FieldSpec]) -> None:
        if not run:
            return
        fmt = ">" + "".join(_FIXED[s.type][0] for s in run)  # type: ignore[index]
        size = struct.calcsize(fmt)
        where = f"{cls.__name__}.{run[0].name}" + (f"..{run[-1].name}" if len(run) > 1 else "")
        unpack = src.const(struct.Struct(fmt).unpack_from)
        targets = ", ".join(f"f_{s.name}" for s in run) + ("," if len(run) == 1 else "")
        src.add(1, f"if end - pos < {size}: raise short(pos, {size}, end, {where!r})")
        src.add(1, f"({targets}) = {unpack}(buf, pos)")
        src.add(1, f"pos += {size}")

    def _read_field(self, src: _Source, cls: type, s: FieldSpec, version: int, flexible: bool,
                    ind: int) -> None:
        var = f"f_{s.name}"
        where = f"{cls.__name__}.{s.name}"
        nullable = in_versions(version, s.nullable)
        t = s.type
        if isinstance(t, Kind):
            self._read_primitive(src, t, var, nullable, flexible, where, ind)
        elif isinstance(t, ArrayOf):
            self._read_array(src, t, var, nullable, version, flexible, where, ind)
        else:
            sub = src.const(self.reader(t, version, flexible))
            src.add(ind, f"{var}, pos = {sub}(buf, pos, end)")

    @staticmethod
    def _read_primitive(src: _Source, t: Kind, var: str, nullable: bool, flexible: bool,
                        where: str, ind: int) -> None:
        if t in _FIXED:
            fmt, size = _FIXED[t]
            unpack = src.const(struct.Struct(">" + fmt).unpack_from)
            src.add(ind, f"if end - pos < {size}: raise short(pos, {size}, end, {where!r})")
            src.add(ind, f"({var},) = {unpack}(buf, pos)")
            src.add(ind, f"pos += {size}")
            return
        rd, crd, _, _, takes_null = _VARIABLE[t]
        fn = crd if flexible else rd
        null_arg = f"{nullable}, " if takes_null else ""
        src.add(ind, f"{var}, pos = {fn}(buf, pos, end, {null_arg}{where!r})")

    def _read_array(self, src: _Source, t: ArrayOf, var: str, nullable: bool, version: int,
                    flexible: bool, where: str, ind: int) -> None:
        item_min = self.min_bytes(t.item, version, flexible)
        assert item_min >= 1, f"{where}: items of zero bytes would make the count unbounded"
        length = "read_compact_array_length" if flexible else "read_array_length"
        src.add(ind, f"n, pos = {length}(buf, pos, end, {nullable}, {item_min}, {where!r})")
        if nullable:
            src.add(ind, f"if n < 0: {var} = None")
            src.add(ind, "else:")
            ind += 1
        item = t.item
        if isinstance(item, Kind) and item in _FIXED:
            fmt, size = _FIXED[item]
            src.add(ind, f"{var} = struct.unpack_from('>%d{fmt}' % n, buf, pos)")
            src.add(ind, f"pos += n * {size}")
            return
        src.add(ind, "items = []")
        src.add(ind, "for _ in range(n):")
        if isinstance(item, Kind):
            self._read_primitive(src, item, "it", False, flexible, where + "[]", ind + 1)
        else:
            sub = src.const(self.reader(item, version, flexible))
            src.add(ind + 1, f"it, pos = {sub}(buf, pos, end)")
        src.add(ind + 1, "items.append(it)")
        src.add(ind, f"{var} = tuple(items)")

    def _read_tagged(self, src: _Source, cls: type, tagged: list[FieldSpec], version: int
                     ) -> None:
        where = f"{cls.__name__} tagged fields"
        if not tagged:
            src.add(1, f"pos = skip_tagged_fields(buf, pos, end, {where!r})")
            return
        for s in tagged:
            src.add(1, f"f_{s.name} = {src.const(s.default)}")
        src.add(1, f"count, pos = read_uvarint(buf, pos, end, {where!r})")
        src.add(1, "for _ in range(count):")
        src.add(2, f"tag, pos = read_uvarint(buf, pos, end, {where!r})")
        src.add(2, f"size, pos = read_uvarint(buf, pos, end, {where!r})")
        src.add(2, f"if end - pos < size: raise short(pos, size, end, {where!r})")
        src.add(2, "stop = pos + size")
        for i, s in enumerate(tagged):
            one = _Source()
            self._read_field(one, cls, s, version, True, 1)
            one.add(1, f"return f_{s.name}, pos")
            fn = src.const(one.build(f"read_{cls.__name__}_{s.name}_v{version}", "buf, pos, end"))
            src.add(2, f"{'if' if i == 0 else 'elif'} tag == {s.tag}:")
            src.add(3, f"f_{s.name}, at = {fn}(buf, pos, stop)")
            src.add(3, "if at != stop: raise DecodeError("
                       f"'{cls.__name__}.{s.name}: tagged field size %d does not match its value'"
                       " % size, pos)")
        src.add(2, "pos = stop")

    # ---- writers --------------------------------------------------------------------------
    def writer(self, cls: type, version: int, flexible: bool) -> Writer:
        key = self.layout(cls, version, flexible)
        found = self._writers.get(key)
        if found is None:
            found = self._writers[key] = self._compile_writer(cls, version, flexible)
        return found

    def _compile_writer(self, cls: type, version: int, flexible: bool) -> Writer:
        regular, tagged = self.split(cls, version, flexible)
        src = _Source()
        run: list[FieldSpec] = []
        for s in regular:
            if isinstance(s.type, Kind) and s.type in _FIXED:
                run.append(s)
                continue
            self._write_fixed_run(src, run)
            run = []
            self._write_field(src, cls, s, version, flexible, 1)
        self._write_fixed_run(src, run)
        if flexible:
            self._write_tagged(src, cls, tagged, version)
        return src.build(f"write_{cls.__name__}_v{version}", "o, app")  # type: ignore[no-any-return]

    @staticmethod
    def _write_fixed_run(src: _Source, run: list[FieldSpec]) -> None:
        if not run:
            return
        fmt = ">" + "".join(_FIXED[s.type][0] for s in run)  # type: ignore[index]
        pack = src.const(struct.Struct(fmt).pack)
        src.add(1, f"app({pack}({', '.join(f'o.{s.name}' for s in run)}))")

    def _write_field(self, src: _Source, cls: type, s: FieldSpec, version: int, flexible: bool,
                     ind: int) -> None:
        where = f"{cls.__name__}.{s.name}"
        nullable = in_versions(version, s.nullable)
        t = s.type
        if isinstance(t, Kind):
            self._write_primitive(src, t, f"o.{s.name}", nullable, flexible, where, ind)
        elif isinstance(t, ArrayOf):
            self._write_array(src, t, s.name, nullable, version, flexible, where, ind)
        else:
            sub = src.const(self.writer(t, version, flexible))
            src.add(ind, f"{sub}(o.{s.name}, app)")

    @staticmethod
    def _write_primitive(src: _Source, t: Kind, value: str, nullable: bool, flexible: bool,
                         where: str, ind: int) -> None:
        if t in _FIXED:
            pack = src.const(struct.Struct(">" + _FIXED[t][0]).pack)
            src.add(ind, f"app({pack}({value}))")
            return
        _, _, wr, cwr, takes_null = _VARIABLE[t]
        fn = cwr if flexible else wr
        null_arg = f"{nullable}, " if takes_null else ""
        src.add(ind, f"{fn}(app, {value}, {null_arg}{where!r})")

    def _write_array(self, src: _Source, t: ArrayOf, name: str, nullable: bool, version: int,
                     flexible: bool, where: str, ind: int) -> None:
        src.add(ind, f"v = o.{name}")
        src.add(ind, "if v is None:")
        if nullable:
            src.add(ind + 1, "app(b'\\x00')" if flexible else "app(b'\\xff\\xff\\xff\\xff')")
        else:
            src.add(ind + 1, f"write_null_array(app, False, {flexible}, {where!r})")
        src.add(ind, "else:")
        ind += 1
        src.add(ind, f"n = array_length(v, {where!r})")
        src.add(ind, "app(encode_uvarint(n + 1))" if flexible else "app(INT32.pack(n))")
        item = t.item
        if isinstance(item, Kind) and item in _FIXED:
            src.add(ind, f"app(struct.pack('>%d{_FIXED[item][0]}' % n, *v))")
            return
        src.add(ind, "for it in v:")
        if isinstance(item, Kind):
            self._write_primitive(src, item, "it", False, flexible, where + "[]", ind + 1)
        else:
            sub = src.const(self.writer(item, version, flexible))
            src.add(ind + 1, f"{sub}(it, app)")

    def _write_tagged(self, src: _Source, cls: type, tagged: list[FieldSpec], version: int
                      ) -> None:
        if not tagged:
            src.add(1, "app(b'\\x00')")
            return
        # Kafka writes a tagged field only when it differs from its default.
        src.add(1, "tagged = []")
        for s in tagged:
            one = _Source()
            self._write_field(one, cls, s, version, True, 1)
            fn = src.const(one.build(f"write_{cls.__name__}_{s.name}_v{version}", "o, app"))
            if isinstance(s.type, ArrayOf):
                differs = f"o.{s.name} is None or len(o.{s.name}) > 0"
            else:
                differs = f"o.{s.name} != {src.const(s.default)}"
            src.add(1, f"if {differs}:")
            src.add(2, "parts = []")
            src.add(2, f"{fn}(o, parts.append)")
            src.add(2, f"tagged.append(({s.tag}, b''.join(parts)))")
        src.add(1, "app(encode_uvarint(len(tagged)))")
        src.add(1, "for tag, data in tagged:")
        src.add(2, "app(encode_uvarint(tag) + encode_uvarint(len(data)) + data)")
