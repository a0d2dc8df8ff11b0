"""Prove rules unreachable: an earlier rule answers every request a later one would match."""

from __future__ import annotations

from collections.abc import Iterator

from ..core._rulemodel import CidrSet, Match, Rule

__all__ = ["unreachable"]

# --- Rules no request can reach ------------------------------------------------------------------


def unreachable(rules: list[Rule]) -> Iterator[tuple[Rule, Rule]]:
    """(later, earlier) for each rule that an earlier one always answers before it applies.

    Sound, not complete: reported only when every request the later rule matches certainly
    matches the earlier one, and the earlier one answers all of those.
    """
    for index, later in enumerate(rules):
        earlier = next((e for e in rules[:index] if _answers_first(e, later)), None)
        if earlier is not None:
            yield later, earlier


def _answers_first(earlier: Rule, later: Rule) -> bool:
    return _answers_all(earlier, later) and _implies(later.match, earlier.match)


def _answers_all(earlier: Rule, later: Rule) -> bool:
    if earlier.always_answers:
        return True
    # A redirect to "$host..." lets a request without a usable Host go on; a later rule
    # that names hosts only ever matches requests that have one.
    gated = earlier.allow is not None or earlier.rate_limit is not None
    return earlier.redirect is not None and not gated and later.match.hosts is not None


def _implies(later: Match, earlier: Match) -> bool:
    """Every request matching ``later`` also matches ``earlier``."""
    return (
        _subset(later.methods, earlier.methods)
        and _subset(later.hosts, earlier.hosts)
        and (earlier.scheme is None or later.scheme == earlier.scheme)
        and _covered(later.clients, earlier.clients)
        and all(any(mine.implies(theirs) for mine in later.headers) for theirs in earlier.headers)
        and _path_implies(later, earlier)
    )


def _covered(later: CidrSet | None, earlier: CidrSet | None) -> bool:
    return earlier is None or (later is not None and earlier.covers(later))


def _subset(later: frozenset[bytes] | None, earlier: frozenset[bytes] | None) -> bool:
    return earlier is None or (later is not None and later <= earlier)


def _path_implies(later: Match, earlier: Match) -> bool:
    exact = later.paths
    if earlier.paths is not None and not (exact is not None and exact <= earlier.paths):
        return False
    if earlier.path_prefixes is not None:
        prefixes = earlier.path_prefixes
        known = [paths for paths in (exact, later.path_prefixes) if paths is not None]
        if not any(all(path.startswith(prefixes) for path in paths) for paths in known):
            return False
    if earlier.path_regex is not None:
        same = later.path_regex is not None and later.path_regex == earlier.path_regex
        searched = exact is not None and all(earlier.path_regex.search(p) for p in exact)
        return same or searched
    return True
