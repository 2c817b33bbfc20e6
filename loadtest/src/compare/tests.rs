use super::*;

use Mode::{MutualTls as T, Plaintext as P};

#[test]
fn runs_alternate_abba() {
    assert_eq!(order(0), []);
    assert_eq!(order(1), [(1, P), (1, T)]);
    assert_eq!(order(3), [(1, P), (1, T), (2, T), (2, P), (3, P), (3, T)]);
    let four = order(4);
    let modes: Vec<Mode> = four.iter().map(|(_, m)| *m).collect();
    assert_eq!(modes, [P, T, T, P, P, T, T, P]);
    // Over an even count each mode runs first equally often, and every round runs both.
    let firsts: Vec<Mode> = four.chunks(2).map(|pair| pair[0].1).collect();
    assert_eq!(firsts.iter().filter(|m| **m == P).count(), 2);
    for pair in four.chunks(2) {
        assert_eq!(pair[0].0, pair[1].0);
        assert_ne!(pair[0].1, pair[1].1);
    }
}

#[test]
fn medians() {
    assert_eq!(median([]), None);
    assert_eq!(median([f64::NAN]), None);
    assert_eq!(median([2.0]), Some(2.0));
    assert_eq!(median([3.0, 1.0, 2.0]), Some(2.0));
    assert_eq!(median([10.0, 1.0, 4.0, 2.0]), Some(3.0));
    // One disturbed round does not move it.
    assert_eq!(median([1.05, 9.0, 1.1]), Some(1.1));
    assert_eq!(median([1.0, f64::NAN, 3.0]), Some(2.0));
}

fn side(mean_ms: f64, p50_ms: f64, throughput: f64) -> Side {
    Side { count: 100, errors: 0, mean_ms, p50_ms, p99_ms: 2.0 * mean_ms, throughput_per_s: Some(throughput) }
}

/// One round's pair of `StartActualLRP` from both sides' (mean, p50).
fn pair(plain: (f64, f64), tls: (f64, f64)) -> OperationRatio {
    let (p, t) = (side(plain.0, plain.1, 1000.0 / plain.0), side(tls.0, tls.1, 1000.0 / tls.0));
    OperationRatio {
        name: work::REP_START.into(),
        phase: "trials".into(),
        plaintext: p,
        tls: t,
        mean_ratio: factor(t.mean_ms, p.mean_ms),
        p50_ratio: factor(t.p50_ms, p.p50_ms),
        p99_ratio: factor(t.p99_ms, p.p99_ms),
        throughput_ratio: factor(t.throughput_per_s.unwrap(), p.throughput_per_s.unwrap()),
    }
}

fn headline(rounds: &[Option<OperationRatio>]) -> Headline {
    let per_round: Vec<Option<&OperationRatio>> = rounds.iter().map(Option::as_ref).collect();
    let summary = OperationSummary::of(work::REP_START, "trials", &per_round);
    Headline::of("StartActualLRP", work::REP_START, Some(&summary))
}

#[test]
fn the_verdict_is_the_median_of_the_p50_ratios() {
    // Round 2's TLS run hit a stall: its mean and p50 ratios are far out, the others are not.
    let h = headline(&[
        Some(pair((10.0, 8.0), (11.0, 8.8))),
        Some(pair((10.0, 8.0), (40.0, 16.0))),
        Some(pair((10.0, 8.0), (10.5, 9.2))),
    ]);
    let s = h.summary.as_ref().unwrap();
    assert_eq!(s.p50_ratio.per_round.len(), 3);
    assert!((s.p50_ratio.median.unwrap() - 1.15).abs() < 1e-9, "{s:?}");
    assert!((s.mean_ratio.median.unwrap() - 1.1).abs() < 1e-9, "{s:?}");
    assert_eq!(s.plaintext.p50_ms, Some(8.0));
    assert_eq!(s.tls.p50_ms, Some(9.2));
    assert_eq!(s.tls.mean_ms, Some(11.0));
    assert!((s.throughput_ratio.median.unwrap() - 1.0 / 1.1).abs() < 1e-9, "{s:?}");
    assert!(h.within_target && h.mean_within_target);

    // The means beyond the target, the medians within: the medians decide.
    let h = headline(&[
        Some(pair((10.0, 8.0), (14.0, 8.8))),
        Some(pair((10.0, 8.0), (13.0, 9.0))),
        Some(pair((10.0, 8.0), (15.0, 8.4))),
    ]);
    assert!(h.within_target && !h.mean_within_target, "{h:?}");

    // Two rounds of three beyond: beyond, whatever the means say.
    let h = headline(&[
        Some(pair((10.0, 8.0), (10.0, 10.0))),
        Some(pair((10.0, 8.0), (10.0, 8.0))),
        Some(pair((10.0, 8.0), (10.0, 10.4))),
    ]);
    assert!(!h.within_target && h.mean_within_target, "{h:?}");

    // Exactly the target is within.
    let h = headline(&[Some(pair((10.0, 10.0), (12.0, 12.0)))]);
    assert!(h.within_target && h.mean_within_target, "{h:?}");
}

#[test]
fn a_round_without_the_operation_is_left_out_and_none_is_beyond() {
    let h = headline(&[None, Some(pair((10.0, 10.0), (11.0, 11.0))), Some(pair((10.0, 10.0), (12.6, 12.6)))]);
    let s = h.summary.as_ref().unwrap();
    assert_eq!(s.p50_ratio.per_round[0], None);
    assert!((s.p50_ratio.median.unwrap() - 1.18).abs() < 1e-9, "{s:?}");
    assert!(h.within_target);

    let h = headline(&[None, None]);
    assert_eq!(h.summary.as_ref().unwrap().p50_ratio.median, None);
    assert!(!h.within_target && !h.mean_within_target);
    let h = Headline::of("DesireLRP", seed::SEED_DESIRE, None);
    assert!(!h.within_target);
}
