"""``python -m nas list``: what a user can select, and which package provides it."""

from __future__ import annotations

from nas.errors import ProfileError
from nas.hardware import available_profiles, read_named_profile
from nas.plugin_manager import KINDS, get_plugin_manager

SECTIONS = ("profiles", "spaces", "datasets", "compression", "backends", "plugins")
_KIND_OF = {
    "spaces": "search_space",
    "datasets": "dataset",
    "compression": "compression",
    "backends": "backend",
}


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*header).rstrip()] + [fmt.format(*map(str, r)).rstrip() for r in rows]


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0] if (doc or "").strip() else ""


def _profiles_table() -> list[str]:
    """One row per profile: its limits and file, or ``INVALID: <reason>`` for a file that
    cannot be used (malformed, too large, not a regular file, named twice), so that one
    bad file neither hides the others nor stops the listing."""
    rows = []
    for name, path in available_profiles().items():
        try:
            path, _, p = read_named_profile(name)
        except ProfileError as exc:
            reason = str(exc).removeprefix(f"{path}: ")
            rows.append([name, f"INVALID: {reason}", "", "", "", str(path)])
            continue
        mhz = f"{p.clock_hz / 1e6:g} MHz"
        rows.append([name, p.board, f"{p.sram_bytes} B", f"{p.flash_bytes} B", mhz, str(path)])
    return _table(["name", "board", "sram", "flash", "clock", "file"], rows)


def render(sections: list[str]) -> str:
    pm = get_plugin_manager()
    packages = {p.name: p.package for p in pm.plugins()}
    out: list[str] = []
    for section in sections:
        out.append(f"{section}:")
        if section == "profiles":
            out += _profiles_table()
        elif section == "plugins":
            rows = [[p.name, p.module, p.package] for p in pm.plugins()]
            out += _table(["plugin", "module", "package"], rows)
        else:
            kind = _KIND_OF[section]
            rows = []
            for name, cls in pm.registry(kind).items():
                owner = pm.owner(kind, name)
                rows.append([name, owner, packages.get(owner, "?"), _first_line(cls.__doc__)])
            out += _table(["name", "plugin", "package", "description"], rows)
        out.append("")
    assert set(_KIND_OF.values()) == set(KINDS)
    return "\n".join(out).rstrip()
