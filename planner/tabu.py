"""Upper level: tabu search over (grouping, phase) with Flip / Split / Merge / Move moves, then a Swap polish.

Each iteration samples a bounded neighbourhood (seeded), scores it fast (proportional routing), takes the best
non-tabu neighbour — or a tabu one that beats the best found (aspiration) — re-scores it exactly (routing LP),
and forbids undoing the move for `tenure` iterations. Deterministic for a seed. `polish` then hill-climbs a result
over every Swap (two groups exchange same-type devices across nodes), a move the sampled neighbourhood misses.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from planner.evaluate import Evaluation, Evaluator, Group, canonical, grouping

State = tuple[Group, ...]
POLISH_ROUNDS = 4
"""Swap rounds of `TabuSearch.polish` at most (each enumerates every Swap of the current state)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TabuSettings:
    max_iters: int = 80
    patience: int = 25
    """Stop after this many iterations without a new best."""
    neighbourhood: int = 16
    tenure: int = 8
    time_limit_s: float | None = None
    searches: int = 1
    """Independent searches, each with its own seeded move stream and the whole iteration budget; `plan()` pools
    their finalists (a single search stops in one local optimum, which one depends on the seed)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchProgress:
    iteration: int
    move: str
    current_score: tuple[float, float]
    best_score: tuple[float, float]
    groups: int
    elapsed_s: float


@dataclass(frozen=True, slots=True)
class _Move:
    kind: str
    state: State
    unused: frozenset[int]
    undo: tuple  # tabu attribute that would reverse this move


class TabuSearch:
    def __init__(self, evaluator: Evaluator, prices: np.ndarray, budget: float, settings: TabuSettings,
                 seed: int = 0) -> None:
        self.ev = evaluator
        self.prices = prices
        self.budget = budget
        self.settings = settings
        self.rng = np.random.default_rng(seed)
        self.best: tuple[State, frozenset[int], Evaluation] | None = None
        self.seen: dict[State, tuple[frozenset[int], Evaluation]] = {}
        """Every state scored exactly (routing LP) during `run`, for a simulator-checked final pick."""

    def top(self, k: int, *, distinct_groupings: bool = False) -> list[tuple[State, frozenset[int], Evaluation]]:
        """The `k` best distinct states scored exactly so far, best first. With `distinct_groupings`, only the best
        phase assignment of each grouping (phases are re-planned cheaply later; groupings are not)."""
        ranked = sorted(self.seen.items(), key=lambda kv: kv[1][1].score, reverse=True)
        out: list[tuple[State, frozenset[int], Evaluation]] = []
        groupings: set[frozenset[frozenset[int]]] = set()
        for state, (unused, ev) in ranked:
            if len(out) >= k:
                break
            key = grouping(state)
            if ev.prediction is None or (distinct_groupings and key in groupings):
                continue
            groupings.add(key)
            out.append((state, unused, ev))
        return out

    def cost(self, state: State) -> float:
        return float(sum(self.prices[list(g.members)].sum() for g in state))

    def run(self, state: State, unused: frozenset[int]) -> Iterator[SearchProgress]:
        """Search from `state`; yields progress each iteration. The best is in `self.best` afterwards."""
        start = time.perf_counter()
        current = self.ev.evaluate(state, exact=True)
        self.seen[state] = (unused, current)
        if self.best is None or current.score > self.best[2].score:
            self.best = (state, unused, current)
        tabu: deque[tuple] = deque(maxlen=self.settings.tenure)
        stale = 0
        for it in range(1, self.settings.max_iters + 1):
            moves = self._neighbours(state, unused)
            chosen: tuple[tuple[float, float], _Move] | None = None
            for move in moves:
                score = self.ev.evaluate(move.state, exact=False).score
                allowed = move.undo not in tabu or score > self.best[2].score
                if allowed and (chosen is None or score > chosen[0]):
                    chosen = (score, move)
            if chosen is None:
                break
            move = chosen[1]
            tabu.append(_reverse(move.undo))
            state, unused = move.state, move.unused
            current = self.seen[state][1] if state in self.seen else self.ev.evaluate(state, exact=True)
            self.seen[state] = (unused, current)
            if current.score > self.best[2].score:
                self.best, stale = (state, unused, current), 0
            else:
                stale += 1
            elapsed = time.perf_counter() - start
            yield SearchProgress(iteration=it, move=move.kind, current_score=current.score,
                                 best_score=self.best[2].score, groups=len(state), elapsed_s=elapsed)
            limit = self.settings.time_limit_s
            if stale >= self.settings.patience or (limit is not None and elapsed > limit):
                break

    # ---- moves ----------------------------------------------------------------------------------------------
    def _neighbours(self, state: State, unused: frozenset[int]) -> list[_Move]:
        kinds = ["flip", "split", "merge", "move"]
        out: list[_Move] = []
        seen: set[State] = set()
        attempts = 0
        while len(out) < self.settings.neighbourhood and attempts < 4 * self.settings.neighbourhood:
            attempts += 1
            kind = kinds[int(self.rng.integers(len(kinds)))]
            move = getattr(self, f"_{kind}")(state, unused)
            if move is None or move.state in seen or self.cost(move.state) > self.budget + 1e-9:
                continue
            seen.add(move.state)
            out.append(move)
        return out

    def _pick(self, state: Sequence[Group]) -> int:
        return int(self.rng.integers(len(state)))

    def _flip(self, state: State, unused: frozenset[int]) -> _Move | None:
        k = self._pick(state)
        g = state[k]
        new = Group(g.members, "decode" if g.phase == "prefill" else "prefill")
        return _Move("flip", canonical([*state[:k], new, *state[k + 1:]]), unused, ("flip", g.members))

    def _split(self, state: State, unused: frozenset[int]) -> _Move | None:
        k = self._pick(state)
        g = state[k]
        if len(g.members) < 2:
            return None
        devs = self.ev.cluster.devices
        members = sorted(g.members, key=lambda i: (devs[i].node, devs[i].gpu_type, i))
        cut = int(self.rng.integers(1, len(members)))
        a, b = frozenset(members[:cut]), frozenset(members[cut:])
        other = "decode" if g.phase == "prefill" else "prefill"
        pieces = [Group(a, g.phase), Group(b, other if self.rng.random() < 0.5 else g.phase)]
        if any(self.ev.config(p) is None for p in pieces):
            return None
        return _Move("split", canonical([*state[:k], *state[k + 1:], *pieces]), unused, ("split", g.members))

    def _merge(self, state: State, unused: frozenset[int]) -> _Move | None:
        if len(state) < 3:
            return None
        i, j = sorted(self.rng.choice(len(state), size=2, replace=False).tolist())
        merged = Group(state[i].members | state[j].members, state[i].phase if self.rng.random() < 0.5 else state[j].phase)
        rest = [g for k, g in enumerate(state) if k not in (i, j)]
        return _Move("merge", canonical([*rest, merged]), unused, ("merge", merged.members))

    def _move(self, state: State, unused: frozenset[int]) -> _Move | None:
        sources = [k for k, g in enumerate(state) if len(g.members) > 1]
        from_unused = bool(unused) and (not sources or self.rng.random() < 0.3)
        dst = self._pick(state)
        if from_unused:
            device = sorted(unused)[int(self.rng.integers(len(unused)))]
            new_unused = unused - {device}
            groups = list(state)
        else:
            if not sources:
                return None
            src = sources[int(self.rng.integers(len(sources)))]
            if src == dst:
                return None
            device = sorted(state[src].members)[int(self.rng.integers(len(state[src].members)))]
            groups = list(state)
            groups[src] = Group(state[src].members - {device}, state[src].phase)
            new_unused = unused
        groups[dst] = Group(groups[dst].members | {device}, groups[dst].phase)
        return _Move("move", canonical(groups), new_unused, ("move", device))


    def swap_neighbours(self, state: State) -> list[State]:
        """Every Swap of `state`: two groups exchange same-type devices that sit on different nodes (as many as the
        smaller part holds). Memory and price stay; only the topology changes, so a decode group of 4 + 2 + 2 cards
        on three nodes can become 4 + 4 on two (TP 4 x PP 2: one weight read less per step). Two Moves would pass
        through a worse state, which the sampled neighbourhood rarely crosses."""
        split = [self.ev.cluster.node_type_buckets(g.members) for g in state]
        found: list[State] = []
        for i, j in itertools.combinations(range(len(state)), 2):
            for ka, kb in itertools.product(split[i], split[j]):
                if ka[1] != kb[1] or ka[0] == kb[0]:
                    continue
                size = min(len(split[i][ka]), len(split[j][kb]))
                a, b = frozenset(split[i][ka][:size]), frozenset(split[j][kb][:size])
                rest = [g for k, g in enumerate(state) if k not in (i, j)]
                found.append(canonical([*rest, Group((state[i].members - a) | b, state[i].phase),
                                        Group((state[j].members - b) | a, state[j].phase)]))
        return found

    def polish(self, state: State, unused: frozenset[int], evaluation: Evaluation,
               max_rounds: int = POLISH_ROUNDS) -> tuple[State, frozenset[int], Evaluation]:
        """Best-improvement hill-climb of a search result over every Swap (fast scores); the climbed state replaces
        the original only if it also wins on the exact (routing LP) score."""
        current, score = state, self.ev.evaluate(state, exact=False).score
        for _ in range(max_rounds):
            scored = [(self.ev.evaluate(s, exact=False).score, s) for s in self.swap_neighbours(current)]
            if not scored:
                break
            top, best = max(scored, key=lambda c: c[0])
            if top <= score:
                break
            current, score = best, top
        if current == state:
            return state, unused, evaluation
        exact = self.ev.evaluate(current, exact=True)
        self.seen[current] = (unused, exact)
        return (current, unused, exact) if exact.score > evaluation.score else (state, unused, evaluation)


def _reverse(undo: tuple) -> tuple:
    """The tabu attribute that forbids reversing a move: a split group may not re-form, a merged one not split,
    a flipped group not flip back, a moved device not move again."""
    kind, key = undo
    return {"split": ("merge", key), "merge": ("split", key)}.get(kind, undo)


__all__ = ["SearchProgress", "TabuSearch", "TabuSettings"]
