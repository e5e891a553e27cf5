//! [`ExecutableCheck`]: a program the service shells out to is on `PATH` and, optionally,
//! at least a given version — the "is ffmpeg installed, and new enough?" check.
//!
//! The program is looked up on `PATH` the way the service's own `Command::new` would find
//! it (a name with a `/` is taken as a path). With a minimum version, the check runs it
//! with `--version`, then `-version` (ffmpeg, java) if that gives no version, under a
//! timeout (default 5 s; the process is killed when it runs over), and reads the first
//! dotted number of its output (`ffmpeg version 6.1.1-3ubuntu5` → `6.1.1`). The process
//! runs off the async threads, without stdin.
//!
//! Failure kinds: `config` (not on `PATH`, not executable), `version` (older than
//! required), `timeout` (the version command hung), `error` (no version in the output).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use smoketest_checks::exec::ExecutableCheck;
//! use smoketest_core::{Context, ErrorKind, SmokeCheck};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let mut ctx = Context::detached("exec", Duration::from_secs(5));
//! let error = ExecutableCheck::new("surely-not-installed-smoketest-tool")
//!     .run(&mut ctx)
//!     .await
//!     .unwrap_err();
//! assert_eq!(error.kind(), ErrorKind::Config);
//! assert!(error.message().starts_with("`surely-not-installed-smoketest-tool` is not on PATH"));
//! # }
//! ```

use std::cmp::Ordering;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use smoketest_core::{CheckError, Context, ErrorKind, Outcome, SmokeCheck};

use crate::meta::{Meta, budget, human, name_part};

/// Passes when a program is found on `PATH` (and new enough). See the
/// [module documentation](self).
#[derive(Debug, Clone)]
pub struct ExecutableCheck {
    meta: Meta,
    program: String,
    min_version: Option<String>,
    version_args: Vec<Vec<String>>,
    exec_timeout: Duration,
}

impl ExecutableCheck {
    /// Require `program` (`ffmpeg`, or a path like `/usr/bin/convert`). Named
    /// `exec::{file name}` (`exec::convert`), tagged `exec`.
    pub fn new(program: impl Into<String>) -> Self {
        let program = program.into();
        ExecutableCheck {
            meta: Meta::new(
                format!(
                    "exec::{}",
                    name_part(program.rsplit('/').next().unwrap_or(&program))
                ),
                "exec",
            ),
            program,
            min_version: None,
            version_args: vec![vec!["--version".into()], vec!["-version".into()]],
            exec_timeout: Duration::from_secs(5),
        }
    }

    /// Require at least this version (`"6.0"`, `"2.39.1"`), compared number by number.
    pub fn min_version(mut self, version: impl Into<String>) -> Self {
        self.min_version = Some(version.into());
        self
    }

    /// The arguments that make the program print its version, instead of trying
    /// `--version`, then `-version`.
    pub fn version_args<I, T>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.version_args = vec![args.into_iter().map(Into::into).collect()];
        self
    }

    /// How long the version command may run before it is killed (default 5 s, never past
    /// the check's deadline).
    pub fn exec_timeout(mut self, timeout: Duration) -> Self {
        self.exec_timeout = timeout;
        self
    }
}

meta_builders!(ExecutableCheck);

/// Where `program` would be found: itself if it contains a `/`, else the first
/// executable file of that name in `PATH`.
pub fn find_on_path(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let path = PathBuf::from(program);
        return is_executable(&path).then_some(path);
    }
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.is_file() && meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        meta.is_file()
    }
}

/// The first dotted number in `text` (`"ffmpeg version 6.1.1-3ubuntu5"` → `"6.1.1"`).
pub fn parse_version(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let starts = bytes[i].is_ascii_digit() && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric());
        if starts {
            let end = bytes[i..]
                .iter()
                .position(|b| !(b.is_ascii_digit() || *b == b'.'))
                .map_or(bytes.len(), |p| i + p);
            let candidate = text[i..end].trim_end_matches('.');
            if candidate.contains('.') {
                return Some(candidate.to_string());
            }
            i = end;
        } else {
            i += 1;
        }
    }
    None
}

/// Compare dotted versions number by number; missing parts count as zero.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let parts = |v: &str| -> Vec<u64> { v.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    let (a, b) = (parts(a), parts(b));
    for i in 0..a.len().max(b.len()) {
        let ord = a.get(i).unwrap_or(&0).cmp(b.get(i).unwrap_or(&0));
        if ord != Ordering::Equal {
            return ord;
        }
    }
    Ordering::Equal
}

#[async_trait::async_trait]
impl SmokeCheck for ExecutableCheck {
    meta_methods!();

    async fn run(&self, ctx: &mut Context) -> smoketest_core::Result {
        let program = self.program.clone();
        let found = tokio::task::spawn_blocking(move || find_on_path(&program)).await?;
        let Some(path) = found else {
            let message = if self.program.contains('/') {
                format!("`{}` does not exist or is not executable", self.program)
            } else {
                format!("`{}` is not on PATH", self.program)
            };
            return Err(CheckError::new(ErrorKind::Config, message).with_suggestion(
                "Install the program in the service's image or host, or fix PATH (or give the full path); check the execute permission.",
            ));
        };
        ctx.observe("path", path.display().to_string());
        let Some(min) = &self.min_version else {
            return Ok(Outcome::Pass);
        };
        let timeout = self.exec_timeout.min(budget(ctx));
        let mut outputs = Vec::new();
        for args in &self.version_args {
            let shown = format!("{} {}", self.program, args.join(" "));
            let child = tokio::process::Command::new(&path)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| CheckError::error(format!("could not run `{shown}`: {e}")))?;
            let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
                Err(_) => {
                    return Err(CheckError::new(
                        ErrorKind::Timeout,
                        format!("`{shown}` did not finish within {}; it was killed", human(timeout)),
                    )
                    .with_suggestion(
                        "The program hangs when asked for its version: run the command by hand on this host, or set version_args to a command that prints the version and exits.",
                    ));
                }
                Ok(result) => result
                    .map_err(|e| CheckError::error(format!("could not run `{shown}`: {e}")))?,
            };
            let text = format!(
                "{}\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            if let Some(version) = parse_version(&text) {
                ctx.observe("version", &version);
                if compare_versions(&version, min) == Ordering::Less {
                    return Err(CheckError::new(
                        ErrorKind::Version,
                        format!("`{}` is version {version}, older than the required {min} ({})", self.program, path.display()),
                    )
                    .with_suggestion(
                        "Upgrade the program in the service's image or host, or check that PATH finds the intended installation first.",
                    ));
                }
                return Ok(Outcome::Pass);
            }
            outputs.push((shown, text.trim().lines().next().unwrap_or("").to_string()));
        }
        let tried = outputs
            .iter()
            .map(|(cmd, first)| format!("`{cmd}` printed `{first}`"))
            .collect::<Vec<_>>()
            .join("; ");
        Err(CheckError::error(format!(
            "found no version number in the output of `{}`: {tried}",
            self.program
        ))
        .with_suggestion(
            "Set version_args to the arguments that make the program print its version.",
        ))
    }
}
