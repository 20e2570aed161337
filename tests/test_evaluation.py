"""The figures of an evaluation, from a known set of game outcomes."""

import numpy as np
import pytest

from snake_purejaxrl.evaluation import describe, eval_summary


def outcomes(score, won, starved):
    score = np.array(score)
    return {"score": score, "length": 10 * score + 5, "won": np.array(won, bool),
            "starved": np.array(starved, bool)}  # fmt: skip


def test_the_lost_games_are_split_into_starved_and_crashed_with_their_median_scores():
    figures = eval_summary(
        outcomes([141, 10, 20, 30, 120, 141], [1, 0, 0, 0, 0, 1], [0, 1, 1, 0, 0, 0]), 141
    )
    assert figures["win_rate"] == figures["starved_rate"] == figures["crashed_rate"]
    assert figures["win_rate"] == pytest.approx(1 / 3)
    assert (figures["starved_median_score"], figures["crashed_median_score"]) == (15, 75)
    line = describe(figures)
    assert "starved 33.3% at median score 15, crashed 33.3% at median score 75" in line


def test_with_no_game_lost_there_is_no_median_score_of_the_losses():
    figures = eval_summary(outcomes([141, 141], [1, 1], [0, 0]), 141)
    assert figures["crashed_rate"] == figures["starved_rate"] == 0
    assert figures["starved_median_score"] is figures["crashed_median_score"] is None
    assert "starved 0.0%, crashed 0.0%, mean length" in describe(figures)
