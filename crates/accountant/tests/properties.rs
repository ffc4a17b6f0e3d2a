//! Properties every analysis must keep over the supported range: epsilon
//! moves the right way with each parameter, calibration inverts the
//! analysis, and extreme inputs give finite, sound answers with bounded
//! work.

use pft_accountant::pld::{self, PldOptions};
use pft_accountant::{calibrate, rdp, Method, Segment};
use proptest::prelude::*;

fn eps(method: Method, sigma: f64, q: f64, steps: u64, delta: f64) -> f64 {
    method
        .epsilon(&[Segment::new(sigma, q, steps).unwrap()], delta)
        .unwrap()
        .epsilon
}

/// A log-uniform draw in [lo, hi].
fn log_uniform(lo: f64, hi: f64) -> impl Strategy<Value = f64> {
    (lo.ln()..hi.ln()).prop_map(f64::exp)
}

fn sound_method() -> impl Strategy<Value = Method> {
    prop_oneof![Just(Method::Pld), Just(Method::Rdp)]
}

/// Typical DP-SGD settings, where tests stay quick.
fn setting() -> impl Strategy<Value = (f64, f64, u64, f64)> {
    (
        log_uniform(0.5, 20.0),
        log_uniform(1e-4, 0.5),
        (1u64..20_000),
        log_uniform(1e-10, 1e-3),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn epsilon_grows_with_steps(method in sound_method(), (sigma, q, steps, delta) in setting(), extra in 1u64..5_000) {
        let before = eps(method, sigma, q, steps, delta);
        let after = eps(method, sigma, q, steps + extra, delta);
        prop_assert!(after >= before, "{before} -> {after}");
    }

    #[test]
    fn epsilon_grows_with_sample_rate(method in sound_method(), (sigma, q, steps, delta) in setting(), factor in 1.001f64..3.0) {
        let bigger = (q * factor).min(1.0);
        let before = eps(method, sigma, q, steps, delta);
        let after = eps(method, sigma, bigger, steps, delta);
        prop_assert!(after >= before, "{before} -> {after}");
    }

    #[test]
    fn epsilon_shrinks_with_noise(method in sound_method(), (sigma, q, steps, delta) in setting(), factor in 1.001f64..3.0) {
        let before = eps(method, sigma, q, steps, delta);
        let after = eps(method, sigma * factor, q, steps, delta);
        prop_assert!(after <= before, "{before} -> {after}");
    }

    #[test]
    fn epsilon_shrinks_as_delta_grows(method in sound_method(), (sigma, q, steps, delta) in setting(), factor in 1.01f64..100.0) {
        let before = eps(method, sigma, q, steps, delta);
        let after = eps(method, sigma, q, steps, (delta * factor).min(0.5));
        prop_assert!(after <= before, "{before} -> {after}");
    }

    #[test]
    fn pld_never_exceeds_rdp((sigma, q, steps, delta) in setting()) {
        let p = eps(Method::Pld, sigma, q, steps, delta);
        let r = eps(Method::Rdp, sigma, q, steps, delta);
        prop_assert!(p <= r, "PLD {p} > RDP {r}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn noise_calibration_is_the_least_noise_meeting_the_target(
        target in log_uniform(0.1, 20.0),
        q in log_uniform(1e-3, 0.2),
        steps in 10u64..5_000,
        delta in log_uniform(1e-9, 1e-4),
    ) {
        match calibrate::noise_multiplier(Method::Pld, target, delta, q, steps) {
            Ok(c) => {
                prop_assert!(c.epsilon <= target);
                prop_assert_eq!(eps(Method::Pld, c.noise_multiplier, q, steps, delta), c.epsilon);
                if !c.at_search_floor {
                    let less = c.noise_multiplier * (1.0 - 3e-4);
                    prop_assert!(eps(Method::Pld, less, q, steps, delta) > target);
                }
            }
            Err(e) => prop_assert!(false, "{e}"),
        }
    }

    #[test]
    fn step_calibration_is_the_most_steps_the_budget_allows(
        target in log_uniform(0.2, 10.0),
        q in log_uniform(1e-3, 0.1),
        sigma in log_uniform(0.7, 5.0),
        delta in log_uniform(1e-9, 1e-4),
    ) {
        match calibrate::max_steps(Method::Pld, target, delta, q, sigma) {
            Ok(c) => {
                prop_assert!(c.epsilon <= target);
                prop_assert_eq!(eps(Method::Pld, sigma, q, c.steps, delta), c.epsilon);
                if !c.at_search_ceiling {
                    prop_assert!(eps(Method::Pld, sigma, q, c.steps + 1, delta) > target);
                }
            }
            Err(pft_accountant::AccountantError::BudgetBelowOneStep { one_step_epsilon, .. }) => {
                prop_assert!(one_step_epsilon > target);
            }
            Err(e) => prop_assert!(false, "{e}"),
        }
    }

    /// Across the whole supported range (q in [1e-6, 1], sigma in [0.3, 100],
    /// up to 10^7 steps, delta down to 1e-12) PLD returns a finite answer,
    /// never above RDP's sound bound, within the FFT cap that bounds its
    /// work.
    #[test]
    fn extreme_inputs_give_finite_sound_bounded_answers(
        q in log_uniform(1e-6, 1.0),
        sigma in log_uniform(0.3, 100.0),
        steps in log_uniform(1.0, 1e7).prop_map(|s| s.round() as u64),
        delta in log_uniform(1e-12, 1e-2),
    ) {
        let history = [Segment::new(sigma, q, steps).unwrap()];
        let p = pld::epsilon(&history, delta).unwrap();
        prop_assert!(p.epsilon.is_finite() && p.epsilon >= 0.0);
        prop_assert!(p.fft_size <= PldOptions::default().max_fft_size);
        let (r, _) = rdp::epsilon(&history, delta).unwrap();
        prop_assert!(p.epsilon <= r * (1.0 + 1e-9), "PLD {} > RDP {r}", p.epsilon);
    }
}

#[test]
fn unreachable_targets_and_tiny_budgets_are_clear_errors() {
    let err = calibrate::noise_multiplier(Method::Pld, 1e-6, 1e-5, 1.0, 10_000_000).unwrap_err();
    assert!(
        err.to_string().contains("no noise multiplier up to"),
        "{err}"
    );
    let err = calibrate::max_steps(Method::Pld, 0.01, 1e-5, 0.5, 0.5).unwrap_err();
    assert!(
        err.to_string().contains("a single step already spends"),
        "{err}"
    );
}

#[test]
fn bad_inputs_name_the_argument_and_its_range() {
    let cases: [(f64, f64, u64, f64, &str); 6] = [
        (1.0, 1.5, 10, 1e-5, "sample_rate"),
        (1.0, 0.0, 10, 1e-5, "sample_rate"),
        (0.0, 0.1, 10, 1e-5, "noise_multiplier"),
        (1.0, 0.1, 0, 1e-5, "steps"),
        (1.0, 0.1, 10, 1.0, "delta"),
        (1.0, 0.1, 10, 0.0, "delta"),
    ];
    for (sigma, q, steps, delta, argument) in cases {
        let result = Segment::new(sigma, q, steps).and_then(|s| Method::Pld.epsilon(&[s], delta));
        let err = result.unwrap_err();
        assert_eq!(err.argument().map(|a| a.key()), Some(argument), "{err}");
        assert!(err.to_string().contains("valid range"), "{err}");
    }
    assert!(calibrate::noise_multiplier(Method::Pld, -1.0, 1e-5, 0.1, 10).is_err());
}
