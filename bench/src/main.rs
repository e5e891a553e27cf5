//! `smoketest-bench`: the load benchmarks behind `scripts/bench.sh` and `BENCHMARKS.md`.
//!
//! ```text
//! smoketest-bench run [--out BENCHMARKS.md] [--postgres URL | --no-postgres] [--criterion DIR] [--quick]
//! smoketest-bench serve APP [--postgres URL] [--pool N] [--checks N] [--workers N]   (started by `run`)
//! smoketest-bench load ADDR PATH [CONNECTIONS] [SECONDS]    (load one server, for profiling)
//! ```
//!
//! `run` starts each benchmark server as a child process of its own, loads it over
//! loopback, measures each scenario side by side with its reference, prints every ratio
//! with its goal and writes the Markdown report. See `BENCHMARKS.md` for the method.

mod load;
mod machine;
mod pg;
mod pgproxy;
mod profile;
mod report;
mod run;
mod servers;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("serve") => servers::main(&args[1..]),
        Some("run") => run::main(&args[1..]),
        Some("load") => run::load_main(&args[1..]),
        None => run::main(&[]),
        Some(other) => Err(format!(
            "unknown command `{other}`; use `run` (the benchmarks), `serve APP` (one server) or `load ADDR PATH` (load one)"
        )),
    };
    if let Err(e) = result {
        eprintln!("smoketest-bench: {e}");
        std::process::exit(1);
    }
}
