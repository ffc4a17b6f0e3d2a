//! `pft bench accountant` times the PLD accountant against this crate's own
//! RDP (the cheap, looser method every DP library ships) on the same cases,
//! and prints the ratio. `bench/accountant/run.sh` adds the external peers
//! (dp-accounting's PLD, Opacus's RDP and PRV) on the same case list, taken
//! from `pft bench accountant --print-cases`.

use std::time::Instant;

use clap::Args;
use pft_accountant::{calibrate, Method, Segment};
use serde::{Deserialize, Serialize};

use super::{max, median};
use crate::{print_json, Outcome};

#[derive(Args)]
pub struct AccountantArgs {
    /// Timed repetitions of the headline case.
    #[arg(long, default_value_t = 100)]
    repeats: usize,
    /// Print the case list as JSON (for the peer script) and exit.
    #[arg(long)]
    print_cases: bool,
    /// Print all timings as one JSON object.
    #[arg(long)]
    json: bool,
}

/// One accounting question: epsilon after `steps` steps.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Case {
    set: &'static str,
    sample_rate: f64,
    noise_multiplier: f64,
    steps: u64,
    delta: f64,
}

/// One calibration question: the least noise for a target.
#[derive(Debug, Clone, Copy, Serialize)]
struct CalibrationCase {
    target_epsilon: f64,
    delta: f64,
    sample_rate: f64,
    steps: u64,
}

/// The headline: a typical DP-SGD fine-tune, 10,000 steps.
const HEADLINE: Case = Case {
    set: "headline",
    sample_rate: 0.01,
    noise_multiplier: 1.0,
    steps: 10_000,
    delta: 1e-5,
};

fn grid() -> Vec<Case> {
    let mut cases = Vec::new();
    for &sample_rate in &[0.001, 0.004, 0.01, 0.05, 0.25] {
        for &noise_multiplier in &[0.5, 0.8, 1.0, 1.5, 3.0, 10.0] {
            for &steps in &[1, 100, 1_000, 10_000, 100_000] {
                for &delta in &[1e-5, 1e-8] {
                    cases.push(Case {
                        set: "grid",
                        sample_rate,
                        noise_multiplier,
                        steps,
                        delta,
                    });
                }
            }
        }
    }
    cases
}

/// The corners of the supported range.
fn extremes() -> Vec<Case> {
    let mut cases = Vec::new();
    for &sample_rate in &[1e-6, 1e-3, 0.1, 1.0] {
        for &noise_multiplier in &[0.3, 1.0, 10.0, 100.0] {
            for &steps in &[1, 10_000, 10_000_000] {
                for &delta in &[1e-5, 1e-12] {
                    cases.push(Case {
                        set: "extreme",
                        sample_rate,
                        noise_multiplier,
                        steps,
                        delta,
                    });
                }
            }
        }
    }
    cases
}

fn calibrations() -> Vec<CalibrationCase> {
    let mut cases = Vec::new();
    for &target_epsilon in &[0.5, 1.0, 3.0, 8.0] {
        for &sample_rate in &[0.01, 0.05] {
            cases.push(CalibrationCase {
                target_epsilon,
                delta: 1e-5,
                sample_rate,
                steps: 1_000,
            });
        }
    }
    cases
}

#[derive(Serialize)]
struct Timed {
    epsilon: f64,
    /// Median wall time of one call, milliseconds.
    ms: f64,
    /// The slowest call, the first (cold) one included: FFT plans and
    /// buffers for a new size are made then.
    worst_ms: f64,
}

#[derive(Serialize)]
struct CaseResult {
    #[serde(flatten)]
    case: Case,
    pld: Timed,
    rdp: Timed,
}

#[derive(Serialize)]
struct CalibrationResult {
    #[serde(flatten)]
    case: CalibrationCase,
    noise_multiplier: f64,
    epsilon: f64,
    ms: f64,
    worst_ms: f64,
}

#[derive(Serialize)]
struct Summary {
    headline_pld_ms: f64,
    headline_rdp_ms: f64,
    /// How many times faster PLD is than RDP on the headline case.
    headline_rdp_over_pld: f64,
    grid_pld_median_ms: f64,
    grid_pld_max_ms: f64,
    grid_10k_steps_pld_max_ms: f64,
    grid_rdp_median_ms: f64,
    extreme_pld_max_ms: f64,
    /// The slowest single PLD call anywhere, cold first calls included.
    pld_worst_call_ms: f64,
    calibration_median_ms: f64,
    calibration_max_ms: f64,
    calibration_worst_call_ms: f64,
}

#[derive(Serialize)]
struct Report {
    summary: Summary,
    cases: Vec<CaseResult>,
    calibrations: Vec<CalibrationResult>,
}

#[derive(Serialize)]
struct CaseList {
    cases: Vec<Case>,
    calibrations: Vec<CalibrationCase>,
}

/// Runs `f` once (counted only in the worst case: it pays for FFT plans
/// and buffers of new sizes), then `repeats` times; returns the last
/// result, the median and the worst time in ms.
fn time<T>(
    repeats: usize,
    mut f: impl FnMut() -> anyhow::Result<T>,
) -> anyhow::Result<(T, f64, f64)> {
    let start = Instant::now();
    f()?;
    let mut worst = start.elapsed().as_secs_f64() * 1e3;
    let mut times = Vec::with_capacity(repeats);
    let mut last = None;
    for _ in 0..repeats.max(1) {
        let start = Instant::now();
        last = Some(f()?);
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    worst = worst.max(times[times.len() - 1]);
    let value = last.expect("at least one repetition ran");
    Ok((value, times[times.len() / 2], worst))
}

fn run_case(case: Case, repeats: usize) -> anyhow::Result<CaseResult> {
    let history = [Segment::new(
        case.noise_multiplier,
        case.sample_rate,
        case.steps,
    )?];
    let timed = |method: Method| -> anyhow::Result<Timed> {
        let (epsilon, ms, worst_ms) = time(repeats, || {
            Ok(method.epsilon(&history, case.delta)?.epsilon)
        })?;
        Ok(Timed {
            epsilon,
            ms,
            worst_ms,
        })
    };
    Ok(CaseResult {
        case,
        pld: timed(Method::Pld)?,
        rdp: timed(Method::Rdp)?,
    })
}

pub fn run(a: AccountantArgs) -> Outcome {
    let grid = grid();
    let extremes = extremes();
    let calibration_cases = calibrations();
    if a.print_cases {
        let mut cases = vec![HEADLINE];
        cases.extend(grid.iter().copied());
        return print_json(&CaseList {
            cases,
            calibrations: calibration_cases,
        });
    }
    let headline = run_case(HEADLINE, a.repeats)?;
    let mut cases = vec![];
    for &case in grid.iter().chain(&extremes) {
        cases.push(run_case(case, 3)?);
    }
    let mut calibrations = Vec::new();
    for &case in &calibration_cases {
        let calibrate = || {
            calibrate::noise_multiplier(
                Method::Pld,
                case.target_epsilon,
                case.delta,
                case.sample_rate,
                case.steps,
            )
        };
        let (c, ms, worst_ms) = time(3, || Ok(calibrate()?))?;
        calibrations.push(CalibrationResult {
            case,
            noise_multiplier: c.noise_multiplier,
            epsilon: c.epsilon,
            ms,
            worst_ms,
        });
    }
    let in_set = |set: &'static str| cases.iter().filter(move |c| c.case.set == set);
    let summary = Summary {
        headline_pld_ms: headline.pld.ms,
        headline_rdp_ms: headline.rdp.ms,
        headline_rdp_over_pld: headline.rdp.ms / headline.pld.ms,
        grid_pld_median_ms: median(in_set("grid").map(|c| c.pld.ms).collect()),
        grid_pld_max_ms: max(in_set("grid").map(|c| c.pld.ms)),
        grid_10k_steps_pld_max_ms: max(in_set("grid")
            .filter(|c| c.case.steps == 10_000)
            .map(|c| c.pld.ms)),
        grid_rdp_median_ms: median(in_set("grid").map(|c| c.rdp.ms).collect()),
        extreme_pld_max_ms: max(in_set("extreme").map(|c| c.pld.ms)),
        calibration_median_ms: median(calibrations.iter().map(|c| c.ms).collect()),
        calibration_max_ms: max(calibrations.iter().map(|c| c.ms)),
        calibration_worst_call_ms: max(calibrations.iter().map(|c| c.worst_ms)),
        pld_worst_call_ms: max(cases.iter().chain([&headline]).map(|c| c.pld.worst_ms)),
    };
    cases.insert(0, headline);
    let report = Report {
        summary,
        cases,
        calibrations,
    };
    if a.json {
        return print_json(&report);
    }
    let s = &report.summary;
    println!("accountant benchmark (median wall time per call, this machine)");
    println!(
        "  headline, q=0.01 sigma=1 10,000 steps delta=1e-5: PLD {:.3} ms, RDP {:.3} ms (PLD {:.1}x faster)",
        s.headline_pld_ms, s.headline_rdp_ms, s.headline_rdp_over_pld
    );
    println!(
        "  grid of {} cases: PLD median {:.3} ms, max {:.3} ms (10,000-step cases max {:.3} ms); RDP median {:.3} ms",
        grid.len(),
        s.grid_pld_median_ms,
        s.grid_pld_max_ms,
        s.grid_10k_steps_pld_max_ms,
        s.grid_rdp_median_ms
    );
    println!(
        "  {} extreme cases (q 1e-6..1, sigma 0.3..100, up to 1e7 steps, delta to 1e-12): PLD max {:.1} ms",
        extremes.len(),
        s.extreme_pld_max_ms
    );
    println!(
        "  slowest single PLD call, cold first calls included: {:.1} ms",
        s.pld_worst_call_ms
    );
    println!(
        "  noise calibration, {} targets: median {:.2} ms, max {:.2} ms (slowest call {:.2} ms)",
        report.calibrations.len(),
        s.calibration_median_ms,
        s.calibration_max_ms,
        s.calibration_worst_call_ms
    );
    Ok(())
}
