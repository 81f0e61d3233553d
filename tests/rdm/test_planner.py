"""DP-RDM planner: the authors' worked example, the budget search, and the CLI."""

from __future__ import annotations

import json

import pytest

from dpsad_core.cli import main
from dpsad_core.errors import ConfigError, PrivacyBudgetError
from dpsad_core.privacy import epsilon_rdp
from dpsad_core.rdm.planner import RetrievalSettings, plan_queries, queries_for_budget, sigma_for_budget

WORKED = RetrievalSettings(k=18, sample_rate=0.01, sigma=0.2)


def test_worked_example_from_the_authors_notebook():
    plan = plan_queries(num_records=10_000_000, settings=WORKED, queries=1000, delta=1e-7)
    assert round(plan.epsilon, 3) == 0.997
    assert plan.rdp_order == 25.0
    assert plan.settings.noise_multiplier == pytest.approx(1.8)


def test_cli_plan_json_reproduces_worked_example(capsys):
    code = main(["rdm", "plan", "--n", "10000000", "--k", "18", "--q", "0.01", "--sigma", "0.2",
                 "--queries", "1000", "--delta", "1e-7", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert round(result["epsilon"], 3) == 0.997
    assert result["rdp_order"] == 25


def test_queries_for_budget_is_the_largest_that_fits():
    plan = queries_for_budget(num_records=10_000_000, settings=WORKED, epsilon=0.997, delta=1e-7)
    assert plan.epsilon <= 0.997
    over = epsilon_rdp([WORKED.mechanism(plan.queries + 1)], delta=1e-7)[0]
    assert over > 0.997
    assert plan.queries == 1000  # 1,000 queries cost 0.99688, 1,001 cost more than 0.997


def test_cli_plan_with_epsilon_prints_queries(capsys):
    code = main(["rdm", "plan", "--n", "10000000", "--k", "18", "--q", "0.01", "--sigma", "0.2",
                 "--epsilon", "2", "--delta", "1e-7", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["epsilon"] <= 2 < epsilon_rdp([WORKED.mechanism(result["queries"] + 1)], delta=1e-7)[0]


def test_budget_below_one_query_is_refused():
    with pytest.raises(PrivacyBudgetError, match="one query costs"):
        queries_for_budget(num_records=1000, settings=WORKED, epsilon=0.01, delta=1e-5)


def test_cli_bad_values_exit_with_config_code(capsys):
    assert main(["rdm", "plan", "--n", "1000", "--k", "0", "--q", "0.01", "--sigma", "0.2",
                 "--queries", "10", "--delta", "1e-5"]) == ConfigError.exit_code
    assert "k must be" in capsys.readouterr().err


def test_small_index_warns():
    plan = plan_queries(num_records=500, settings=WORKED, queries=10, delta=1e-5)
    assert any("fewer than k" in warning for warning in plan.warnings)


def test_sigma_for_budget_never_overshoots():
    sigma = sigma_for_budget(k=10, sample_rate=0.02, queries=100, epsilon=3.0, delta=1e-5)
    settings = RetrievalSettings(k=10, sample_rate=0.02, sigma=sigma)
    assert epsilon_rdp([settings.mechanism(100)], delta=1e-5)[0] <= 3.0
    tighter = RetrievalSettings(k=10, sample_rate=0.02, sigma=sigma * 0.9)
    assert epsilon_rdp([tighter.mechanism(100)], delta=1e-5)[0] > 3.0
