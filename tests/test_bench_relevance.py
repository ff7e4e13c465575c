"""The held-out relevance benchmark's counting: holes, and holes whose answer is nowhere else."""

from __future__ import annotations

from types import SimpleNamespace

from qa.bench.relevance import score_squad
from qa.squad import SquadQuestion

TEXT = "River Alder\n\nIts water was used by twelve mills until the railway arrived in 1871.\n"


class _Searcher:
    """Answers every question but the ones it is told to refuse; quotes nothing."""

    def __init__(self, refused: set[str]):
        self.index = SimpleNamespace(documents={"d.txt": SimpleNamespace(text=TEXT)})
        self.refused = refused

    def search(self, question, k=5, doc_ids=None):
        return SimpleNamespace(answered=question not in self.refused, passages=[])


def test_holes_whose_answer_text_is_nowhere_else_are_counted_apart():
    questions = [
        SquadQuestion("How many mills were there?", "d.txt", "twelve", None, None),  # "twelve" is still in the text
        SquadQuestion("Who built the bridge?", "d.txt", "the monks of Varrow", None, None),
        SquadQuestion("When did the floods come?", "d.txt", "1953", None, None),
    ]
    row = score_squad(_Searcher({"Who built the bridge?"}), questions, "stub", show_progress=False)
    assert row.extra["holes"] == 3 and row.extra["strict_holes"] == 2
    assert abs(row.holes_abstained - 1 / 3) < 1e-9
    assert row.strict_holes_abstained == 0.5
