//! The `junction-centre` binary on its own: its flags, and bad settings refused before it connects
//! to anything (the tests with a real Mosquitto and PostgreSQL are the box's tests/centre.rs, which
//! produce what the centre lands). Its presence also makes `cargo test` build the binary they run.

use std::process::Command;

fn centre(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_junction-centre"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("junction-centre runs");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout))
}

#[test]
fn help_names_the_flags_and_a_missing_database_is_refused() {
    let (code, out) = centre(&["--help"]);
    assert_eq!(code, Some(0), "{out}");
    for flag in ["--mqtt", "--postgres", "--client-id", "--retain-events-days", "--metrics"] {
        assert!(out.contains(flag), "{flag}:\n{out}");
    }
    let (code, out) = centre(&[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("--postgres"), "{out}");
}

#[test]
fn a_bad_broker_is_refused_by_name_before_connecting() {
    // The database address is unreachable on purpose: the broker's settings are checked first.
    let (code, out) = centre(&["--mqtt", "http://127.0.0.1:1", "--postgres", "host=127.0.0.1 port=1"]);
    assert_eq!(code, Some(1), "{out}");
    let line = out.lines().find(|l| l.starts_with("junction-centre: error:")).unwrap_or("");
    assert!(line.contains("mqtt.url") && line.contains("http://127.0.0.1:1"), "{out}");
    let (code, out) =
        centre(&["--mqtt", "mqtts://127.0.0.1:1", "--ca-file", "/nonexistent/ca.pem", "--postgres", "host=x"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("mqtt.ca_file") && out.contains("/nonexistent/ca.pem"), "{out}");
}
