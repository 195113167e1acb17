//! `cargo run -p aauth-demos -- [N|SLUG|all|--list]` (or `cargo xtask demo`); `4 --live` for
//! demo 4 with a person at a real browser.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line tool"
)]

use std::process::ExitCode;

use aauth_demos::DEMOS;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--live") {
        if args.iter().any(|a| a != "--live" && a != "4") {
            eprintln!(
                "--live is for demo 4 (a person at a real browser): cargo xtask demo 4 --live"
            );
            return ExitCode::FAILURE;
        }
        println!("=== Demo 4 (live): a person consents in a real browser ===");
        return match aauth_demos::demo4_live(&|s| println!("{s}")) {
            Ok(t) => {
                print!("{}", t.render());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("demo 4 FAILED: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let arg = args.first().cloned().unwrap_or_else(|| "all".to_owned());
    if arg == "--list" {
        for d in DEMOS {
            println!("{:>2}  {:<22} {}", d.number, d.slug, d.title);
        }
        return ExitCode::SUCCESS;
    }
    let selected: Vec<_> = match arg.as_str() {
        "all" => DEMOS.iter().collect(),
        n => match n.parse::<u8>() {
            Ok(n) if DEMOS.iter().any(|d| d.number == n) => {
                DEMOS.iter().filter(|d| d.number == n).collect()
            }
            // A demo's slug names it too: `cargo xtask demo oauth`.
            _ if DEMOS.iter().any(|d| d.slug == n) => {
                DEMOS.iter().filter(|d| d.slug == n).collect()
            }
            _ => {
                eprintln!("unknown demo {n:?}; try --list");
                return ExitCode::FAILURE;
            }
        },
    };
    let (mut ran, mut failed) = (0, 0);
    for d in selected {
        println!("=== Demo {}: {} ===", d.number, d.title);
        match (d.run)() {
            Ok(t) => {
                print!("{}", t.render());
                ran += 1;
            }
            Err(e) => {
                eprintln!("demo {} FAILED: {e}", d.number);
                failed += 1;
            }
        }
        println!();
    }
    println!("{ran} demo(s) ran, {failed} failed");
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
