//! Command-line values checked when they are parsed, so that no program of
//! the workspace panics, spins or runs for ever because of a flag.
//!
//! Every parser here is a `Fn(&str) -> Result<T, String>` usable as a clap
//! `value_parser`; clap turns the `Err` into a usage error (exit code 2)
//! that names the flag, the value given and what was expected:
//!
//! ```
//! use std::time::Duration;
//! let secs = cli_values::seconds(0.0, 3600.0);
//! assert_eq!(secs("1.5").unwrap(), Duration::from_millis(1500));
//! assert_eq!(secs("250ms").unwrap(), Duration::from_millis(250));
//! assert!(secs("-1").is_err());
//! assert!(secs("nan").is_err());
//! assert!(secs("inf").is_err());
//! assert!(secs("1e30").is_err());
//! ```
//!
//! Integers need no parser of their own: `clap::value_parser!(u64).range(..)`
//! already rejects signs, fractions and overflow. What they do need is an
//! upper bound wherever the value sizes an allocation or a loop.
//!
//! [`numeric_flag_failures`] walks every flag of a command (and of its
//! subcommands) with [`HOSTILE`] values and lists the ones that were taken;
//! each binary's tests assert that list is empty.

use std::time::Duration;

/// Values no numeric flag may accept: negative, not a number, infinite,
/// absurdly large, overflowing every integer type, empty.
pub const HOSTILE: &[&str] = &[
    "-1",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "1e30",
    "340282366920938463463374607431768211456",
    "",
];

/// A float in `min..=max`: finite, never NaN.
///
/// The returned closure is a clap `value_parser`. `what` names the unit in
/// the error, e.g. `"a loss fraction"` or `"datagrams per second"`.
pub fn float_in(
    min: f64,
    max: f64,
    what: &'static str,
) -> impl Fn(&str) -> Result<f64, String> + Clone + Send + Sync + 'static {
    move |s: &str| {
        let v = parse_finite(s, what)?;
        if v < min || v > max {
            return Err(format!("expected {what} from {min} to {max}, got {v}"));
        }
        Ok(v)
    }
}

/// A float in `min..=max` with `min` itself excluded (e.g. a rate that must
/// be above zero).
pub fn float_above(
    min: f64,
    max: f64,
    what: &'static str,
) -> impl Fn(&str) -> Result<f64, String> + Clone + Send + Sync + 'static {
    move |s: &str| {
        let v = parse_finite(s, what)?;
        if v <= min || v > max {
            return Err(format!(
                "expected {what} above {min} and at most {max}, got {v}"
            ));
        }
        Ok(v)
    }
}

/// A duration in `min_s..=max_s` seconds.
///
/// Accepts plain seconds (`1.5`), or a number with a unit: `us`, `ms`, `s`,
/// `m`, `h` (`250ms`, `2s`, `1.5m`, `24h`).
pub fn seconds(
    min_s: f64,
    max_s: f64,
) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    move |s: &str| duration_in(s, 1.0, min_s, max_s)
}

/// A duration given in milliseconds when it has no unit (`--delay-ms 1.5`),
/// in `min_ms..=max_ms`. Units are accepted as in [`seconds`].
pub fn millis(
    min_ms: f64,
    max_ms: f64,
) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    move |s: &str| duration_in(s, 1e-3, min_ms / 1e3, max_ms / 1e3)
}

fn duration_in(s: &str, bare_unit_s: f64, min_s: f64, max_s: f64) -> Result<Duration, String> {
    let t = s.trim();
    let (number, unit_s) = if let Some(n) = t.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = t.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (t, bare_unit_s)
    };
    let v = parse_finite(number, "a duration")? * unit_s;
    if v < min_s || v > max_s {
        return Err(format!(
            "expected a duration from {} to {}, got {}",
            show_secs(min_s),
            show_secs(max_s),
            show_secs(v)
        ));
    }
    Duration::try_from_secs_f64(v).map_err(|e| format!("{s:?} is not a duration: {e}"))
}

fn show_secs(v: f64) -> String {
    if v != 0.0 && v.abs() < 1.0 {
        format!("{} ms", v * 1e3)
    } else {
        format!("{v} s")
    }
}

fn parse_finite(s: &str, what: &str) -> Result<f64, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err(format!("expected {what}, got an empty value"));
    }
    let v: f64 = t
        .parse()
        .map_err(|_| format!("expected {what} (a number), got {s:?}"))?;
    if !v.is_finite() {
        return Err(format!("expected {what} (a finite number), got {s:?}"));
    }
    Ok(v)
}

/// A `--listen` / `--connect` value: `HOST:PORT`, the host an address
/// (`127.0.0.1:7000`, `[::1]:7000`) or a name (`localhost:7000`), which
/// resolves to its first IPv4 address, else its first address. Every error
/// says what was expected.
///
/// ```
/// assert_eq!(cli_values::socket_addr("127.0.0.1:7").unwrap().port(), 7);
/// assert!(cli_values::socket_addr("localhost:7").unwrap().ip().is_loopback());
/// assert!(cli_values::socket_addr("localhost").unwrap_err().contains("HOST:PORT"));
/// ```
///
/// # Errors
/// No port, an empty host, a port over 65535, a name that does not resolve.
pub fn socket_addr(value: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::{SocketAddr, ToSocketAddrs};
    if let Ok(addr) = value.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let expected = "expected HOST:PORT, e.g. 127.0.0.1:7000 or localhost:7000";
    let Some((host, port)) = value.rsplit_once(':') else {
        return Err(format!("`{value}` has no port: {expected}"));
    };
    if host.is_empty() {
        return Err(format!(
            "`{value}` has no host before the colon: {expected}"
        ));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| format!("`{port}` is not a port from 0 to 65535: {expected}"))?;
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("`{host}` does not resolve ({e}): {expected}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| format!("`{host}` resolves to no address: {expected}"))
}

#[cfg(test)]
mod addr_tests {
    #[test]
    fn addresses_take_ips_and_host_names_and_errors_say_what_was_expected() {
        use super::socket_addr;
        assert_eq!(
            socket_addr("127.0.0.1:7000"),
            Ok(([127, 0, 0, 1], 7000).into())
        );
        assert_eq!(socket_addr("[::1]:9"), Ok("[::1]:9".parse().unwrap()));
        let local = socket_addr("localhost:7000").unwrap();
        assert!(local.ip().is_loopback(), "{local}");
        assert_eq!(local.port(), 7000);
        for bad in [
            "localhost",
            ":7200",
            "localhost:-1",
            "localhost:65536",
            "",
            "not an address",
        ] {
            let err = socket_addr(bad).unwrap_err();
            assert!(err.contains("HOST:PORT"), "{bad}: {err}");
        }
    }
}

/// Every flag of `cmd` and its subcommands that took a [`HOSTILE`] value,
/// as `"prog sub --flag=value"` lines. Empty means every numeric flag
/// refused them all.
///
/// Flags whose values are text (`String`, `PathBuf`, `OsString`) are not
/// numeric and are skipped; every other flag that takes a value (numbers,
/// durations, addresses, enums) must refuse every hostile value at parse
/// time. The value is given as `--flag=value` so that `-1` is not read as a
/// short flag. Positional arguments are skipped: they are paths or
/// addresses in this workspace.
pub fn numeric_flag_failures(cmd: &clap::Command) -> Vec<String> {
    let mut root = cmd.clone();
    root.build();
    let mut failures = Vec::new();
    walk(
        &root,
        &root,
        &mut vec![root.get_name().to_string()],
        &mut failures,
    );
    failures
}

/// Panics, listing them, unless every numeric flag of `cmd` refuses every
/// [`HOSTILE`] value: the one-line test each binary runs.
///
/// # Panics
/// When [`numeric_flag_failures`] is not empty.
pub fn assert_numeric_flags_refuse_hostile_values(cmd: &clap::Command) {
    let failures = numeric_flag_failures(cmd);
    assert!(
        failures.is_empty(),
        "flags of {} that took a hostile value:\n{}",
        cmd.get_name(),
        failures.join("\n")
    );
}

fn walk(root: &clap::Command, cmd: &clap::Command, path: &mut Vec<String>, out: &mut Vec<String>) {
    for arg in cmd.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if !arg.get_action().takes_values() || is_text(arg) {
            continue;
        }
        for bad in HOSTILE {
            let mut argv = path.clone();
            argv.push(format!("--{long}={bad}"));
            match root.clone().try_get_matches_from(&argv) {
                Err(e)
                    if matches!(
                        e.kind(),
                        clap::error::ErrorKind::ValueValidation
                            | clap::error::ErrorKind::InvalidValue
                    ) => {}
                Err(e) if e.kind() == clap::error::ErrorKind::ArgumentConflict => {}
                Err(e) => out.push(format!(
                    "{} (refused, but as {:?})",
                    argv.join(" "),
                    e.kind()
                )),
                Ok(_) => out.push(argv.join(" ")),
            }
        }
    }
    for sub in cmd.get_subcommands() {
        path.push(sub.get_name().to_string());
        walk(root, sub, path, out);
        path.pop();
    }
}

fn is_text(arg: &clap::Arg) -> bool {
    use std::any::TypeId;
    let id = arg.get_value_parser().type_id();
    id == TypeId::of::<String>()
        || id == TypeId::of::<std::path::PathBuf>()
        || id == TypeId::of::<std::ffi::OsString>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_refuse_every_hostile_value() {
        let p = float_in(0.0, 1e6, "a rate");
        for bad in HOSTILE {
            assert!(p(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(p("12.5").unwrap(), 12.5);
        assert_eq!(p("0").unwrap(), 0.0);
        assert!(float_above(0.0, 1.0, "x")("0").is_err());
        assert_eq!(float_above(0.0, 1.0, "x")("1").unwrap(), 1.0);
    }

    #[test]
    fn durations_take_units_and_bounds() {
        let p = seconds(0.0, 60.0);
        assert_eq!(p("2").unwrap(), Duration::from_secs(2));
        assert_eq!(p("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(p("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(p("1500us").unwrap(), Duration::from_micros(1500));
        assert!(p("61").is_err());
        assert!(p("2h").is_err(), "7200 s is above 60 s");
        assert_eq!(
            seconds(0.0, 86_400.0)("2h").unwrap(),
            Duration::from_secs(7200)
        );
        for bad in HOSTILE {
            assert!(p(bad).is_err(), "{bad:?} accepted");
        }
        let ms = millis(0.0, 1000.0);
        assert_eq!(ms("1.5").unwrap(), Duration::from_micros(1500));
        assert_eq!(ms("1s").unwrap(), Duration::from_secs(1));
        assert!(ms("1e30").is_err());
        let msg = p("-1").unwrap_err();
        assert!(msg.contains("0 s") && msg.contains("60 s"), "{msg}");
    }

    #[derive(clap::Parser, Debug)]
    #[allow(dead_code)]
    struct Demo {
        #[arg(long, value_parser = float_in(0.0, 1.0, "a fraction"))]
        good: Option<f64>,
        #[arg(long)]
        bad: Option<f64>,
        #[arg(long)]
        path: Option<std::path::PathBuf>,
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
        count: Option<u32>,
        #[command(subcommand)]
        sub: Option<Sub>,
    }

    #[derive(clap::Subcommand, Debug)]
    enum Sub {
        Run {
            #[arg(long)]
            secs: Option<f64>,
        },
    }

    #[test]
    fn the_walk_finds_unchecked_flags_in_subcommands() {
        use clap::CommandFactory;
        let failures = numeric_flag_failures(&Demo::command());
        let refused = std::panic::catch_unwind(|| {
            assert_numeric_flags_refuse_hostile_values(&Demo::command())
        });
        assert!(refused.is_err(), "the assertion fails on unchecked flags");
        assert!(
            failures.iter().any(|f| f.contains("--bad=nan")),
            "{failures:?}"
        );
        assert!(
            failures.iter().any(|f| f.contains("run --secs=inf")),
            "{failures:?}"
        );
        assert!(
            !failures
                .iter()
                .any(|f| f.contains("--good") || f.contains("--count") || f.contains("--path")),
            "{failures:?}"
        );
    }
}
