"""The per-layer fallback search: move the most sensitive layers toward float until the floor holds.

``evaluate(plan)`` judges a plan (node -> level) on the validation samples; ``rank(plan)`` orders its
quantized nodes, most worth moving first (``quantizer._rank``). Greedy: move the top node one step toward
float (int4 -> int8 -> float; int8+activation -> int8 weight -> float), re-measure, re-rank once every
ranked node has moved. Once the floor holds, moves that turn out unnecessary are undone, oldest first.
"""

from __future__ import annotations

from typing import Callable

from .accuracy import Accuracy
from .rewrite import DEMOTE

Plan = dict[str, str]
# moves toward float each starting level allows (int4 -> int8 -> float: two)
MOVES = {"int4": 2, "int8+act": 2, "int8": 1}


def search(levels: Plan, reasons: dict[str, str], start: str, evaluate: Callable[[Plan], Accuracy],
           rank: Callable[[Plan], list[str]], tell: Callable[[str, int, int], None],
           steps: list[str]) -> Accuracy:
    """Change ``levels`` (and ``reasons``, ``steps``) in place until the floor holds or nothing can move;
    the accuracy of the plan it ends with."""
    history: list[tuple[str, str]] = []  # (node, level it had) for every move toward float
    most_moves = sum(MOVES.get(level, 0) for level in levels.values())
    tell("start", 0, 1)
    accuracy = evaluate(levels)
    tell("start", 1, 1)
    queue: list[str] = []
    while not accuracy.passed:
        if not queue:
            queue = rank(levels)
            if not queue:
                break
        node = queue.pop(0)
        if levels[node] == "float":
            continue
        old, levels[node] = levels[node], DEMOTE[levels[node]]
        reasons[node] = f"sensitive: moved {old} -> {levels[node]} to meet the floor"
        accuracy = evaluate(levels)
        history.append((node, old))
        tell("search", len(history), most_moves)
        steps.append(f"{node}: {old} -> {levels[node]} (then {accuracy.text()})")
    if accuracy.passed and history:
        # Greedy steps can overshoot: an early move may be unnecessary once later ones are made.
        # Undo each (oldest first) when the floor still holds without it.
        for undone, (node, old) in enumerate(history):
            tell("undo", undone + 1, len(history))
            if levels[node] == DEMOTE.get(old):
                trial = {**levels, node: old}
                trial_accuracy = evaluate(trial)
                if trial_accuracy.passed:
                    levels[node], accuracy = old, trial_accuracy
                    if old == start:
                        reasons.pop(node, None)
                    else:
                        reasons[node] = f"sensitive: moved {start} -> {old} to meet the floor"
                    steps.append(f"{node}: back to {old}, not needed (then {accuracy.text()})")
    return accuracy
