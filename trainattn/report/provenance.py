"""Where and when a chapter's runs were computed, and the command that recomputes them.

A chapter at the ``cpu`` profile mostly reads its long runs back from committed records
(``results/cpu/runs/``), so the machine that builds the book is rarely the one that computed
them. Every run record keeps ``versions`` (software and ``hardware``) and, since the run store
grew it, ``provenance`` (UTC ``date`` it finished and git ``commit``). :func:`runs_provenance`
gathers them over a chapter's runs; :func:`provenance_note` writes the line shown under the
chapter's tables and figures.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable


def runs_provenance(results: Iterable[dict]) -> dict:
    """Summary over run results: ``{"runs", "hardware": {name: count}, "first", "last", "commits",
    "undated"}``.

    ``first``/``last`` are the earliest and latest finishing dates (ISO, UTC) of the runs that
    recorded one; ``undated`` counts runs written before dates were kept; ``commits`` are the
    distinct commits, sorted. Duplicate result dicts (the same run object twice) count once.
    """
    seen, hardware, dates, commits, undated = set(), Counter(), [], set(), 0
    for result in results:
        if id(result) in seen:
            continue
        seen.add(id(result))
        hardware[(result.get("versions") or {}).get("hardware") or "not recorded"] += 1
        made = result.get("provenance") or {}
        if made.get("date"):
            dates.append(made["date"])
        else:
            undated += 1
        if made.get("commit"):
            commits.add(made["commit"])
    return {"runs": len(seen), "hardware": dict(sorted(hardware.items())),
            "first": min(dates) if dates else None, "last": max(dates) if dates else None,
            "commits": sorted(commits), "undated": undated}


def recompute_command(stem: str, profile: str) -> str:
    """The command that recomputes notebook ``stem``'s runs instead of reading records back."""
    return f"trainattn book --profile {profile} --notebooks {stem} --recompute"


def provenance_note(info: dict, stem: str, profile: str) -> str:
    """One Markdown paragraph: how many runs, on which hardware, when, at which commits, how to recompute.

    ``info`` is :func:`runs_provenance`'s summary.
    """
    if not info["runs"]:
        return "**Computed** while this book was built (no run records kept)."
    where = ", ".join(f"{n} on {name}" for name, n in info["hardware"].items())
    parts = [f"**Computed:** {info['runs']} run(s): {where}."]
    if info["first"]:
        first, last = info["first"][:10], info["last"][:10]
        when = first if first == last else f"{first} to {last}"
        dated = info["runs"] - info["undated"]
        parts.append(f"Finished {when} (UTC){'' if not info['undated'] else f' ({dated} dated)'}.")
    else:
        parts.append("Finishing dates not recorded (runs written before the store kept them).")
    if info["commits"]:
        parts.append("Commit(s) " + ", ".join(f"`{c}`" for c in info["commits"]) + ".")
    parts.append(f"Recompute instead of reading the records back: `{recompute_command(stem, profile)}`.")
    return " ".join(parts)
