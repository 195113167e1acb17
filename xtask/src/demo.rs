//! `cargo xtask demo [N|SLUG|all|--list]`: runs demos from the `aauth-demos` package.

use crate::cargo;

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let mut cmd = vec!["run", "--quiet", "--package", "aauth-demos", "--"];
    if args.is_empty() {
        cmd.push("all");
    }
    cmd.extend(args.iter().map(String::as_str));
    cargo(&cmd)
}
