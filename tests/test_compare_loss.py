"""``comparison.md`` states the comparison's loss reduction (issue 16 item 5)."""

from lifelong.compare import _loss_lines


def test_one_reduction_is_stated_once_for_every_learner():
    rows = {"finetune": {"loss_reduction": "mean"}, "ewc": {"loss_reduction": "mean"}}
    (line, blank) = _loss_lines(rows)
    assert "`loss_reduction: mean`" in line and "every learner" in line and blank == ""


def test_mixed_reductions_name_the_learners_of_each():
    rows = {"stl": {"loss_reduction": "sum"}, "ewc": {"loss_reduction": "mean"},
            "si": {"loss_reduction": "mean"}}
    line = _loss_lines(rows)[0]
    assert "differs" in line and "mean: ewc, si" in line and "sum: stl" in line


def test_learners_without_a_reduction_add_no_line():
    assert _loss_lines({"lll": {"loss_reduction": None}, "x": {}}) == []
