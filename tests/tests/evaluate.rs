//! The evaluation report in its smoke form (`popvmm-eval run --mode smoke`: two figure-7 cells
//! with the optimizations on and off, NPB EP and IS at class S natively and on 1 and 2 islands):
//! it writes a Markdown report whose figures exist and are well-formed SVG, `data.json` and every
//! run's summary; `render` makes the same report again from them, and `compare` reads two. No
//! figure's value is asserted beyond what the runs must give (the NPB verdicts, the output
//! against the native run's, fig7's own check): timings are never asserted.

use std::path::Path;
use std::process::Command;

use popvmm_tests::{
    assert_svg, images, output_within, popvmm, popvmm_eval, repo_root, scratch, Run,
};
use serde_json::Value;

fn eval(args: &[&str]) -> Run {
    let mut cmd = Command::new(popvmm_eval());
    cmd.args(args)
        .arg("--popvmm")
        .arg(popvmm())
        .arg("--images")
        .arg(images());
    output_within(
        &mut cmd,
        std::time::Duration::from_secs(600),
        &format!("popvmm-eval {args:?}"),
    )
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn smoke_report_has_its_figures_and_data() {
    let dir = scratch("eval-smoke");
    let _ = std::fs::remove_dir_all(&dir);
    let out = dir.to_str().expect("utf-8 path");
    let run = eval(&["run", "--mode", "smoke", "--out", out]);
    assert_eq!(run.code, Some(0), "{}", run.stderr_text());
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = run.stderr_text();
    // Progress on stderr, one line per run; the figure-7 table on stdout.
    assert!(stderr.contains("[ 10/10]"), "{stderr}");
    assert!(
        stdout.contains("Popcorn, sim") && stdout.contains("measured, opt. on"),
        "{stdout}"
    );

    let md = read(&dir.join("report.md"));
    for section in [
        "# popvmm evaluation (smoke)",
        "## Figure 7 on real islands",
        "## NPB kernels",
        "## Fault latency",
        "## Page heat maps",
        "## Rerun and compare",
    ] {
        assert!(md.contains(section), "{section} missing:\n{md}");
    }
    // Every figure the report shows exists and is a well-formed SVG document.
    let images: Vec<&str> = md
        .lines()
        .filter_map(|l| l.strip_prefix("![")?.split_once("](")?.1.strip_suffix(')'))
        .collect();
    assert!(images.len() >= 5, "{images:?}");
    for svg in &images {
        let text = assert_svg(svg, &read(&dir.join(svg)));
        assert!(!text.is_empty(), "{svg}: no text");
    }
    let f7 = assert_svg("figure7.svg", &read(&dir.join("figure7.svg")));
    assert!(f7.contains("1 page, read-write"), "{f7}");
    assert!(f7.contains("Popcorn requests, measured"), "{f7}");

    // The data: the measured cells, the NPB runs verified and as native, each summary kept.
    let data: Value = serde_json::from_str(&read(&dir.join("data.json"))).expect("data.json");
    let cells: Vec<&Value> = data["figure7"]
        .as_array()
        .expect("figure7")
        .iter()
        .filter(|r| !r["measured"].as_array().expect("measured").is_empty())
        .collect();
    assert_eq!(cells.len(), 2, "page rw 1 and 10");
    for c in &cells {
        for m in c["measured"].as_array().expect("measured") {
            assert!(m["error"].is_null(), "{m}");
            assert_eq!(m["ok"], true, "{m}");
            // The array's page was fetched by the reader at least once, and no run's array
            // counts exceed the run's.
            assert!(m["requests"].as_u64() >= Some(1), "{m}");
            assert!(
                m["array_messages"].as_u64() <= m["run_messages"].as_u64(),
                "{m}"
            );
            let stats = dir.join("raw").join(m["stats"].as_str().expect("stats"));
            assert!(stats.is_file(), "{}", stats.display());
        }
    }
    let npb = data["npb"].as_array().expect("npb");
    assert_eq!(npb.len(), 2);
    for row in npb {
        assert_eq!(row["native"]["verified"], true, "{row}");
        for run in row["islands"].as_array().expect("islands") {
            assert_eq!(run["verified"], true, "{run}");
            assert_eq!(run["same_output"], true, "{run}");
            assert!(run["error"].is_null(), "{run}");
        }
        let two = &row["islands"][1];
        assert_eq!(two["islands"], 2);
        assert!(two["messages"].as_u64() > Some(0), "{two}");
    }

    // render: the same report from data.json and raw/ alone.
    std::fs::remove_file(dir.join("report.md")).expect("rm report.md");
    std::fs::remove_file(dir.join("figure7.svg")).expect("rm figure7.svg");
    let again = Command::new(popvmm_eval())
        .args(["render", out])
        .output()
        .expect("render");
    assert!(again.status.success(), "{:?}", again);
    assert_eq!(read(&dir.join("report.md")), md);
    assert_svg("figure7.svg", &read(&dir.join("figure7.svg")));

    // compare: two evaluations (here the same one twice) side by side.
    let cmp = Command::new(popvmm_eval())
        .args(["compare", out, out])
        .output()
        .expect("compare");
    assert!(cmp.status.success(), "{:?}", cmp);
    let text = String::from_utf8_lossy(&cmp.stdout);
    assert!(text.contains("EP S") && text.contains("1.00"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `scripts/evaluate --help` prints what each mode runs and exits 0 before building anything; an
/// unknown argument is refused with the usage line.
#[test]
fn evaluate_script_prints_its_usage() {
    let script = repo_root().join("scripts/evaluate");
    let help = Command::new("bash")
        .arg(&script)
        .arg("--help")
        .output()
        .expect("scripts/evaluate --help");
    assert!(help.status.success(), "{help:?}");
    let text = String::from_utf8_lossy(&help.stdout);
    for word in [
        "Usage: scripts/evaluate",
        "--quick",
        "--smoke",
        "--out DIR",
        "compare",
    ] {
        assert!(text.contains(word), "{word} missing:\n{text}");
    }
    let bad = Command::new("bash")
        .arg(&script)
        .arg("--no-such-option")
        .output()
        .expect("scripts/evaluate --no-such-option");
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("usage: scripts/evaluate"));
}
