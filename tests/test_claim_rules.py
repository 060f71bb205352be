"""Every changed or new verdict rule (issue 30) can fail and can hold, on small synthetic inputs; the claims
tally keeps the paper's claims, our questions and our checks apart."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from paper_utils.figures import fig04_filter_spectra as fig04
from paper_utils.figures import fig05_activation_clusters as fig05
from paper_utils.figures import fig10_pattern_ablation as fig10
from paper_utils.figures import pattern_generation as gen
from paper_utils.report import tables
from paper_utils.report.claims import Claim, kind_tally, tally_sentence, training_note
from paper_utils.report.claims_report import pair_claims, render_markdown


# ------------------------------------------------------------------------------------ kinds and tallies


def test_claim_kind_is_validated_and_defaults_to_paper():
    assert Claim("a", "s", 0.0, 0.1, True).kind == "paper"
    assert Claim("a", "s", 0.0, 0.1, True, kind="check").kind == "check"
    with pytest.raises(ValueError, match="unknown kind"):
        Claim("a", "s", 0.0, 0.1, True, kind="mine")


def test_tally_counts_kinds_apart_and_old_records_as_paper():
    claims = [{"name": "old", "holds": True},                           # no kind: an old record, the paper's
              {"name": "p", "holds": False, "kind": "paper"},
              {"name": "o", "holds": True, "kind": "ours"},
              Claim("c", "s", 0.0, 0.1, True, kind="check")]
    assert kind_tally(claims) == {"paper": (1, 2), "ours": (1, 1), "check": (1, 1)}
    assert tally_sentence(claims) == ("the paper's claims: 1 of 2 records hold; our questions about the paper: 1 of 1 "
                                      "record holds; checks of our tools: 1 of 1 record holds")
    assert tally_sentence(claims[:2]) == "the paper's claims: 1 of 2 records hold"
    assert "checks of our tools: 0 of 0 records hold" in tally_sentence(claims[:2], all_kinds=True)


def test_report_and_verdict_table_separate_the_kinds():
    record = {"notebook": "01_x", "device": "cpu", "date": "2026-12-01T00:00:00Z", "code_version": "abc",
              "claims": [{**Claim("fig2.zero_gap.s.obj", "coincide", 0.2, 0.05, False).__dict__},
                         {**Claim("fig2.optimum.zero_gap.s.obj", "coincide", 0.01, 0.05, True, basis="optimum").__dict__},
                         {**Claim("fig2.exact.certified_gap.s", "cert", 1e-9, 1e-4, True, basis="optimum",
                                  kind="check").__dict__},
                         {"name": "theorem1.bracket.s", "statement": "bracket", "measured": 0.07, "tolerance": 0.05,
                          "holds": False, "basis": "optimum", "kind": "ours"}]}
    text = render_markdown([record], "cpu")
    assert ("the paper's claims: 1 of 2 records hold; our questions about the paper: 0 of 1 record holds; "
            "checks of our tools: 1 of 1 record holds") in text
    assert "**optimum only** (1): `fig2.zero_gap.s.obj`" in text
    assert "Checks of our tools (1): `fig2.exact.certified_gap.s` holds." in text
    assert "Our questions about the paper (1): `theorem1.bracket.s` **does not hold**." in text
    rows = [r for rs in pair_claims([record]).values() for r in rs]
    assert {r["key"]: r["kind"] for r in rows}["fig2.exact.certified_gap.s"] == "check"
    md = tables.verdict_markdown(record["claims"])
    assert md.startswith("**Verdicts**: the paper's claims: 1 of 2 records hold;") and "| check |" in md


def test_training_note_says_converged_only_when_the_rule_held():
    assert training_note([True]) == "converged"
    assert training_note([False]) == "after its budget (not converged)"
    assert training_note([False, False, False]) == "all 3 after their budget (not converged)"
    assert training_note([True, False]) == "1 of 2 converged, the rest after their budget (not converged)"
    assert training_note([True, True]) == "all 2 converged"
    with pytest.raises(ValueError):
        training_note([])


# ------------------------------------------------------------------------------------------- Figure 10

COUNTS = [16, 63, 250, 1000]


def test_patterns_needed_reports_censoring_not_the_grid_top():
    reached = fig10.patterns_needed(COUNTS, [0.3, 0.22, 0.201, 0.2], reference=0.2)
    assert reached == {"P": 250, "censored": False, "P_max": 1000}
    censored = fig10.patterns_needed(COUNTS, [0.3, 0.26, 0.25, 0.24], reference=0.2)
    assert censored == {"P": None, "censored": True, "P_max": 1000}


def test_is_monotone_sees_a_rise_between_independent_samples():
    assert fig10.is_monotone(COUNTS, [0.3, 0.25, 0.22, 0.2])
    assert not fig10.is_monotone(COUNTS, [0.3, 0.25, 0.26, 0.2])
    assert fig10.is_monotone(COUNTS[::-1], [0.2, 0.22, 0.25, 0.3])          # any order of P


def test_more_patterns_needed_respects_censoring():
    def n(P, P_max=1000):
        return {"P": P, "censored": P is None, "P_max": P_max}
    assert fig10.more_patterns_needed(n(1000), n(63)) == {"holds": True, "decided": True}
    assert fig10.more_patterns_needed(n(63), n(250)) == {"holds": False, "decided": True}
    assert fig10.more_patterns_needed(n(None), n(250)) == {"holds": True, "decided": True}      # > 1000 > 250
    assert fig10.more_patterns_needed(n(250), n(None)) == {"holds": False, "decided": True}
    assert fig10.more_patterns_needed(n(None), n(None)) == {"holds": False, "decided": False}
    assert fig10.more_patterns_needed(n(None, 100), n(250)) == {"holds": False, "decided": False}


def _sweep_rows(sigma, primal, duals, metric):
    rows = [{"model": "primal", "noise_level": sigma, metric: primal, "n_patterns": None}]
    rows += [{"model": "dual", "noise_level": sigma, metric: v, "n_patterns": P} for P, v in zip(COUNTS, duals)]
    return rows


def test_published_rule_by_loss_can_hold_and_is_censored_when_the_grid_falls_short():
    rows = (_sweep_rows(0.5, 0.2, [0.3, 0.26, 0.25, 0.24], "train_loss")      # never within 1%: censored
            + _sweep_rows(0.1, 0.1, [0.2, 0.15, 0.1005, 0.1], "train_loss"))  # reached at P = 250 (125 x 2)
    table = fig10.pattern_threshold_table(rows, metric="train_loss")
    claims = {c.name: c for c in fig10._published_claims(table, tuple(COUNTS), by="loss")}
    cens = claims["fig10.patterns_needed_by_loss.sigma0.5"]
    assert cens.measured is None and not cens.holds and cens.details["censored"] and cens.details["monotone"]
    ok = claims["fig10.patterns_needed_by_loss.sigma0.1"]
    assert ok.measured == 250 and ok.holds and not ok.details["censored"] and ok.kind == "paper"
    order = claims["fig10.more_noise_more_patterns_by_loss"]
    assert order.holds and order.details["decided"]                           # > 1000 > 250


def test_published_count_within_a_factor_two_holds():
    rows = _sweep_rows(0.5, 0.2, [0.3, 0.25, 0.21, 0.2], "train_objective") + \
        _sweep_rows(0.1, 0.1, [0.1005, 0.1, 0.1, 0.1], "train_objective")
    claims = {c.name: c for c in fig10._published_claims(fig10.pattern_threshold_table(rows), (16, 63, 250, 1000))}
    assert claims["fig10.patterns_needed.sigma0.1"].measured == 16                 # 125 / 2 > 16: fails
    assert not claims["fig10.patterns_needed.sigma0.1"].holds
    rows = _sweep_rows(0.5, 0.2, [0.3, 0.25, 0.21, 0.2], "train_objective") + \
        _sweep_rows(0.1, 0.1, [0.2, 0.1, 0.1, 0.1], "train_objective")
    claims = {c.name: c for c in fig10._published_claims(fig10.pattern_threshold_table(rows), (16, 63, 250, 1000))}
    assert claims["fig10.patterns_needed.sigma0.1"].measured == 63 and claims["fig10.patterns_needed.sigma0.1"].holds
    assert claims["fig10.more_noise_more_patterns"].holds                          # 1000 > 63


def _optimum(d_P_05, d_P_01, ref_05, ref_01):
    counts = (250, 1000, 2000)
    rows, needed, info = [], {}, {}
    for sigma, d, ref in ((0.5, d_P_05, ref_05), (0.1, d_P_01, ref_01)):
        needed[sigma] = fig10.patterns_needed(counts, d, ref)
        info[sigma] = {"reference": ref, "as_trained": 1.3 * ref, "best_seed": 0, "m": 512,
                       "note": training_note([False]), "seeds": {}}
        rows += [{"sigma": sigma, "P": P, "d_P": v, "m_star": 100} for P, v in zip(counts, d)]
    return {c.name: c for c in fig10._optimum_claims((0.5, 0.1), counts, rows, needed, info, {})}


def test_optimum_patterns_needed_against_the_balanced_primal_holds_or_is_censored():
    held = _optimum([0.3, 0.21, 0.2], [0.1, 0.1, 0.1], ref_05=0.2, ref_01=0.1)
    c = held["fig10.optimum.patterns_needed_vs_balanced_primal.sigma0.5"]
    assert c.measured == 2000 and c.holds and c.basis == "optimum" and c.kind == "paper"
    assert "after its budget (not converged)" in c.statement
    assert held["fig10.optimum.more_noise_more_patterns_vs_balanced_primal"].holds
    censored = _optimum([0.3, 0.25, 0.22], [0.1, 0.1, 0.1], ref_05=0.2, ref_01=0.1)
    c = censored["fig10.optimum.patterns_needed_vs_balanced_primal.sigma0.5"]
    assert c.measured is None and not c.holds and c.details["censored"] and c.details["P_max"] == 2000
    assert censored["fig10.optimum.more_noise_more_patterns_vs_balanced_primal"].holds   # > 2000 > 250
    both = _optimum([0.3, 0.25, 0.22], [0.3, 0.25, 0.22], ref_05=0.2, ref_01=0.2)
    assert not both["fig10.optimum.more_noise_more_patterns_vs_balanced_primal"].holds
    assert not both["fig10.optimum.more_noise_more_patterns_vs_balanced_primal"].details["decided"]


def _bracket(gen_objectives):
    rounds = [{"patterns": P, "objective": o} for P, o in zip((256, 512, 768, 1024), gen_objectives)]
    return {"best_known": min(gen_objectives), "convex_random_curve": {"500": 0.20, "1000": 0.19},
            "convex_from_random": {"rounds": rounds}, "convex_from_primal": {"rounds": rounds[1:]}}


def test_generated_against_random_at_equal_P_from_the_bracket():
    def claim(objs):
        info = {0.5: {"reference": 0.18, "as_trained": 0.2, "best_seed": 0, "m": 512, "note": "x", "seeds": {}}}
        needed = {0.5: fig10.patterns_needed([1000], [0.19], 0.18), 0.1: fig10.patterns_needed([1000], [0.19], 0.18)}
        info[0.1] = info[0.5]
        cl = fig10._optimum_claims((0.5,), (1000,), [{"sigma": 0.5, "P": 1000, "d_P": 0.19, "m_star": 1}], needed,
                                   info, {0.5: _bracket(objs)})
        return next(c for c in cl if c.name == "fig10.optimum.generated_beats_random_at_equal_P.sigma0.5")
    good = claim([0.25, 0.195, 0.185, 0.18])
    assert good.holds and good.kind == "ours" and good.measured < 0
    assert [(m["P_random"], m["P_generated"]) for m in good.details["matches"]] == [(1000, 768)]
    bad = claim([0.25, 0.195, 0.191, 0.18])            # at P = 768 the generated set is above random 1000
    assert not bad.holds and bad.measured > 0


# ------------------------------------------------------------------------------ pattern generation


def test_compare_at_equal_patterns_can_fail_and_hold():
    r = gen.compare_at_equal_patterns([64, 128, 256], [0.5, 0.3, 0.2], [128, 256, 512], [0.35, 0.25, 0.21],
                                      start_P=64)
    assert r["holds"] and [(m["P_random"], m["P_generated"]) for m in r["matches"]] == [(128, 128), (256, 256),
                                                                                         (512, 256)]
    assert math.isclose(r["worst"], (0.2 - 0.21) / 0.21)
    r = gen.compare_at_equal_patterns([64, 128, 256], [0.5, 0.3, 0.2], [128, 256, 512], [0.35, 0.25, 0.19],
                                      start_P=64)
    assert not r["holds"] and r["worst"] > 0
    r = gen.compare_at_equal_patterns([64], [0.5], [128], [0.6], start_P=64)        # only the random start
    assert r == {"matches": [], "worst": None, "holds": False}


def test_generation_claims_use_equal_P_and_kinds():
    res = SimpleNamespace(rounds=[{"patterns": 64, "objective": 0.5, "best_violation": 9.0},
                                  {"patterns": 128, "objective": 0.3, "best_violation": 2.0}],
                          random_P=[128, 256], random_objective=[0.35, 0.31])
    small = SimpleNamespace(gap=1e-8, certified=True)
    primal = [{"objective": 0.4, "converged": False}]
    _, claims = gen._claims(res, primal, small)
    by = {c.name: c for c in claims}
    assert "generation.patterns_to_best" not in by
    c = by["generation.beats_random_at_equal_P"]
    assert c.holds and c.kind == "ours" and len(c.details["matches"]) == 2
    assert by["generation.small_certified_gap"].kind == "check"
    res.random_objective = [0.29, 0.31]
    assert not {c.name: c for c in gen._claims(res, primal, small)[1]}["generation.beats_random_at_equal_P"].holds


# ------------------------------------------------------------------------------------------ Figure 5


def _ari_rows(trained, untrained):
    refs = ("(a) dual d(p)", "(a) primal", "(a) certified dual d(p)", "(a) primal, optimum basis")
    rows = [{"clusters": "(b) iteration 1", "vs": r, "ARI non-background": trained} for r in refs]
    rows += [{"clusters": "untrained two-layer", "vs": r, "ARI non-background": untrained} for r in refs]
    return rows


def test_fig5_first_iteration_is_judged_against_the_untrained_baseline():
    assert fig05.beats_baseline(0.9, 0.8) and not fig05.beats_baseline(0.84, 0.8) and not fig05.beats_baseline(0.7, 0.8)
    distinct = {"(b) iteration 1": 10, "(b) iteration 2": 20}
    fail = {c.name: c for c in fig05._claims(_ari_rows(0.70, 0.82), distinct)}
    c = fail["fig5.first_iteration_beats_untrained.dual"]
    assert not c.holds and math.isclose(c.measured, -0.12) and c.details["untrained_ari"] == 0.82
    assert "untrained" in c.statement and c.tolerance == fig05.ARI_MARGIN
    assert "after its budget (not converged)" in fail["fig5.optimum.first_iteration_beats_untrained.primal"].statement
    hold = {c.name: c for c in fig05._claims(_ari_rows(0.95, 0.60), distinct)}
    assert all(c.holds for c in hold.values())
    assert set(hold) == {"fig5.first_iteration_beats_untrained.dual", "fig5.first_iteration_beats_untrained.primal",
                         "fig5.optimum.first_iteration_beats_untrained.dual",
                         "fig5.optimum.first_iteration_beats_untrained.primal", "fig5.second_iteration_more_complex"}


# ---------------------------------------------------------------------------------- Figures 4 and 11


def test_many_null_needs_a_tenth_not_a_single_filter():
    assert not fig04.many_null(1, 2000)                     # the retired rule held here
    assert fig04.many_null(200, 2000) and fig04.many_null(1500, 2000)
    assert not fig04.many_null(0, 0)


def test_frequency_variety_counts_bands_up_to_nyquist():
    assert fig04.frequency_variety(np.array([40, 30, 20, 10, 0])) == (4, True)
    assert fig04.frequency_variety(np.array([97, 1, 1, 1, 0])) == (1, False)     # all low-pass: no variety
    assert fig04.frequency_variety(np.array([50, 0, 0, 0, 50])) == (1, False)    # beyond Nyquist does not count
    assert fig04.frequency_variety(np.zeros(5)) == (0, False)


# ------------------------------------------------------------------------------------------- Figure 6


def _mri_optimum(R, d_P, loss, U, v):
    import torch
    primal = SimpleNamespace(objective=loss + 0.5 * 1e-2 * float((U ** 2).sum() + (v ** 2).sum()), loss=loss,
                             U=U, v=v, converged=False, seconds=1.0, test_loss=0.1)
    sol = SimpleNamespace(objective=d_P, lower_bound=d_P, gap=0.0, seconds=1.0, beta=1e-2,
                          W=torch.eye(3), Z=torch.zeros(3, 3))
    return SimpleNamespace(R=R, n_slices=1, crop=None, exact=SimpleNamespace(solution=sol, rebuilt_objective=d_P),
                           zero_objective=2 * d_P, seeds=[0], converged=[primal], exact_test_loss=0.1)


def test_fig6_optimum_claims_judge_the_balanced_primal(monkeypatch):
    import torch
    from paper_utils.figures import fig06_mri_loss_curves as fig06
    monkeypatch.setattr(fig06, "baseline_details", lambda scores, data: {})
    U, v = torch.tensor([[4.0, 0.0], [0.0, 1.0]]), torch.tensor([0.25, 1.0])     # path weights 1 and 1
    # as trained: loss + 0.5e-2 (16 + 1 + 1/16 + 1) = loss + 0.0903; balanced: loss + 1e-2 (1 + 1) = loss + 0.02
    rows = fig06.balanced_rows([_mri_optimum(4.0, 0.1, 0.082, U, v)])           # balanced 0.102: 2% above d_P
    assert math.isclose(rows[0]["primal_balanced_vs_dP"], 0.02, rel_tol=1e-6) and rows[0]["m"] == 2
    assert rows[0]["m_star"] == 3 and rows[0]["primal_vs_dP"] > 0.7
    runs = [SimpleNamespace(R=4.0, data=None)]
    claims = {c.name: c for c in fig06.claims_for([], runs, [None], rows, "simulated")}
    reach = claims["fig6.optimum.primal_reaches_dP.R4.seed0"]
    assert reach.holds and reach.kind == "paper" and "after its budget (not converged)" in reach.statement
    assert claims["fig6.optimum.primal_equals_dP.R4.seed0"].kind == "ours"
    assert claims["fig6.optimum.rebuilt_equals_dual.R4"].kind == "check"
    rows = fig06.balanced_rows([_mri_optimum(4.0, 0.1, 0.095, U, v)])            # balanced 0.115: 15% above
    claims = {c.name: c for c in fig06.claims_for([], runs, [None], rows, "simulated")}
    assert not claims["fig6.optimum.primal_reaches_dP.R4.seed0"].holds
