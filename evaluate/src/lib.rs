//! popvmm's evaluation (`popvmm-eval`, `scripts/evaluate`): figure 7 on real islands beside the
//! simulator, the NPB kernels natively and on 1, 2 and 4 islands, the fault latency histogram,
//! page heat maps and the fabric's round trips, written as a Markdown report with SVG plots.
//!
//! The runs are `popvmm launch` processes (the binary of this build), timed from outside, each
//! with its `--stats-json` summary kept in `DIR/raw/`; the figures are drawn by `popvmm::plot`
//! (the same code as `popvmm ctl pages --svg`). Everything measured is in `DIR/data.json`, so a
//! report can be made again (`render`) and two evaluations compared (`compare`).

pub mod data;
pub mod fig7;
pub mod npb;
pub mod report;
pub mod run;

/// `YYYY-MM-DDTHH:MM:SSZ` of a Unix time.
pub fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(super::utc(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
