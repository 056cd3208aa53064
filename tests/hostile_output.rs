//! A service that floods its output (issue 10 §2): `yes` on its stderr. kiln logs at most its
//! burst and rate of the flood's lines, counts the rest in `kiln status`, keeps the last stderr
//! lines, and its health answers and supervisor carry on.

use crate::hostile_support::{every_answer_is, php_fpm_comes_back_after_sigkill};
use kiln::process::output::{BURST, RATE};
use std::time::Instant;
use testkit::control;
use testkit::example::{BOOT_DEADLINE, Example};
use testkit::wait::wait_until;

const KILN: &str = env!("CARGO_BIN_EXE_kiln");

#[test]
fn a_service_flooding_its_stderr_is_rate_limited_and_counted() {
    let ex = Example::render();
    ex.edit_toml(|t| {
        let services = t["service"].as_array_mut().unwrap();
        let mut flood = toml::Table::new();
        flood.insert("name".into(), "flood".into());
        let command = ["sh", "-c", "exec yes 'flood line' >&2"].map(toml::Value::from);
        flood.insert("command".into(), toml::Value::Array(command.to_vec()));
        services.push(flood.into());
    });
    let booted = Instant::now();
    let (kiln, _notify) = ex.boot_ready(KILN);

    wait_until("status to count the flood's dropped lines", BOOT_DEADLINE, || {
        let status = control::status(&ex.socket())?;
        let flood = control::try_unit(&status, "flood")?;
        let tail_keeps_up = flood["stderr_tail"].as_array()?.last()? == "flood line";
        (flood["dropped_lines"].as_u64()? > 0 && tail_keeps_up).then_some(())
    });
    every_answer_is(&ex.readyz_url(), 50, 200);
    php_fpm_comes_back_after_sigkill(&ex);
    let (code, text) = ex.status_cli(KILN, &[]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("output:") && text.contains("lines dropped"),
        "{text}"
    );

    // What reached the log is bounded by the rate since the unit began, however fast `yes` is.
    let bound = f64::from(BURST) + f64::from(RATE) * booted.elapsed().as_secs_f64();
    let logged = kiln.log().matches("flood| flood line").count();
    assert!(
        logged as f64 <= bound,
        "{logged} flood lines logged in {:?}; the rate allows {bound}",
        booted.elapsed()
    );
}
