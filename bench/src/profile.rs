//! Where the instructions go: a reader of callgrind's dump format (self and inclusive cost
//! per function) and the short function names the report prints.
//!
//! Reading the dump ourselves rather than the text `callgrind_annotate` prints keeps the
//! figures exact (instruction counts, not rounded percentages), lets the report subtract one
//! server's profile from another's per request, and does not depend on the annotate
//! script's output format, which changes between valgrind versions.

use std::collections::HashMap;

/// Instructions per function in one callgrind dump.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    /// Every instruction counted (`totals:`, or the sum of self costs).
    pub total: u64,
    /// Instructions executed in the function's own code.
    pub self_cost: HashMap<String, u64>,
    /// Own code plus every call it made (a recursive function counts its inner calls again,
    /// as `callgrind_annotate --inclusive=yes` does).
    pub inclusive: HashMap<String, u64>,
    /// Callee → caller → instructions of the calls (inclusive of the callee's callees).
    pub callers: HashMap<String, HashMap<String, u64>>,
}

impl Profile {
    /// Parse a dump (`--callgrind-out-file`), counting the first event (`Ir`).
    pub fn parse(text: &str) -> Result<Profile, String> {
        let mut names: HashMap<String, String> = HashMap::new();
        let mut profile = Profile::default();
        let mut positions = 1;
        let mut function: Option<String> = None;
        // The cost line after a `calls=` line is the call's inclusive cost.
        let mut call_cost_next = false;
        let mut callee: Option<String> = None;
        let mut totals = None;
        for line in text.lines() {
            let Some(first) = line.bytes().next() else {
                continue;
            };
            if first.is_ascii_digit() || matches!(first, b'+' | b'-' | b'*') {
                let cost = line
                    .split_whitespace()
                    .nth(positions)
                    .map_or(Ok(0), str::parse::<u64>)
                    .map_err(|e| format!("callgrind dump: bad cost line {line:?}: {e}"))?;
                let Some(f) = &function else {
                    return Err(format!("callgrind dump: cost before any fn= ({line:?})"));
                };
                if call_cost_next {
                    *profile.inclusive.entry(f.clone()).or_default() += cost;
                    if let Some(callee) = &callee {
                        *profile
                            .callers
                            .entry(callee.clone())
                            .or_default()
                            .entry(f.clone())
                            .or_default() += cost;
                    }
                    call_cost_next = false;
                } else {
                    *profile.self_cost.entry(f.clone()).or_default() += cost;
                    *profile.inclusive.entry(f.clone()).or_default() += cost;
                }
                continue;
            }
            let Some((key, value)) = line.split_once(['=', ':']) else {
                continue;
            };
            match key {
                "positions" => positions = value.split_whitespace().count().max(1),
                "totals" | "summary" => {
                    totals = value.split_whitespace().next().and_then(|v| v.parse().ok());
                }
                "fn" => function = Some(compressed_name(&mut names, value)),
                // The caller stays `function`.
                "cfn" => callee = Some(compressed_name(&mut names, value)),
                "calls" => call_cost_next = true,
                _ => {}
            }
        }
        profile.total = totals.unwrap_or_else(|| profile.self_cost.values().sum());
        Ok(profile)
    }

    /// The `n` functions with the largest self cost, largest first.
    pub fn top_self(&self, n: usize) -> Vec<(&str, u64)> {
        top(&self.self_cost, n, |_| true)
    }

    /// The `n` callers that spend the most instructions in calls to `callee`, looking
    /// through the allocator shims Rust puts in front of `malloc` and `free`
    /// (`__rdl_alloc`, `__rust_dealloc`, …), which would otherwise be the only caller.
    pub fn top_callers(&self, callee: &str, n: usize) -> Vec<(&str, u64)> {
        let mut callee = callee;
        for _ in 0..4 {
            let callers = self.callers.get(callee);
            let only_shim = callers.and_then(|c| {
                let mut it = c.keys();
                match (it.next(), it.next()) {
                    (Some(one), None) if is_shim(one) => Some(one.as_str()),
                    _ => None,
                }
            });
            match only_shim {
                Some(shim) => callee = shim,
                None => break,
            }
        }
        self.callers
            .get(callee)
            .map_or_else(Vec::new, |callers| top(callers, n, |_| true))
    }

    /// The `n` functions with the largest inclusive cost among those `keep` accepts.
    pub fn top_inclusive(&self, n: usize, keep: impl Fn(&str) -> bool) -> Vec<(&str, u64)> {
        top(&self.inclusive, n, keep)
    }
}

/// Rust's global-allocator shims: one call on the way to `malloc` or `free`.
fn is_shim(name: &str) -> bool {
    [
        "__rdl_",
        "__rust_alloc",
        "__rust_dealloc",
        "__rust_realloc",
        "__rg_",
    ]
    .iter()
    .any(|shim| name.contains(shim))
}

fn top(costs: &HashMap<String, u64>, n: usize, keep: impl Fn(&str) -> bool) -> Vec<(&str, u64)> {
    let mut rows: Vec<(&str, u64)> = costs
        .iter()
        .filter(|(name, _)| keep(name))
        .map(|(name, cost)| (name.as_str(), *cost))
        .collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    rows.truncate(n);
    rows
}

/// `(12) name` defines id 12, `(12)` refers to it, a bare `name` is uncompressed.
fn compressed_name(names: &mut HashMap<String, String>, value: &str) -> String {
    let value = value.trim();
    if let Some(rest) = value.strip_prefix('(')
        && let Some((id, name)) = rest.split_once(')')
    {
        let name = name.trim();
        if name.is_empty() {
            return names
                .get(id)
                .cloned()
                .unwrap_or_else(|| format!("(unknown function {id})"));
        }
        names.insert(id.to_string(), name.to_string());
        return name.to_string();
    }
    value.to_string()
}

/// A demangled Rust symbol made readable in a table: no hash, module paths cut to their
/// crate and last two segments, generic arguments nested deeper than one level elided, at
/// most `max` characters.
pub fn short_name(name: &str, max: usize) -> String {
    let name = strip_hash(name.trim());
    let out = shorten(name, 0);
    if out.chars().count() > max {
        let cut: String = out.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    } else {
        out
    }
}

/// Legacy mangling leaves `::h0123456789abcdef` at the end.
fn strip_hash(name: &str) -> &str {
    if let Some(i) = name.rfind("::h") {
        let hash = &name[i + 3..];
        if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return &name[..i];
        }
    }
    name
}

/// Shorten at `depth` (0: the whole symbol): split on `::` and `as`/`,` outside brackets.
fn shorten(s: &str, depth: usize) -> String {
    if depth >= 2 {
        return "…".into();
    }
    // Split into path segments at this level, each with its bracketed parts shortened.
    let mut segments: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut chars = s.char_indices().peekable();
    let bytes = s.as_bytes();
    while let Some((i, c)) = chars.next() {
        match c {
            '<' | '[' | '(' if !is_arrow(bytes, i) => {
                let close = matching(s, i);
                let inner = &s[i + 1..close];
                let shortened = shorten_list(inner, depth + 1);
                current.push(c);
                current.push_str(&shortened);
                current.push_str(&s[close..=close]);
                while chars.peek().is_some_and(|(j, _)| *j <= close) {
                    chars.next();
                }
            }
            ':' if bytes.get(i + 1) == Some(&b':') => {
                chars.next();
                segments.push(std::mem::take(&mut current));
            }
            _ => current.push(c),
        }
    }
    segments.push(current);
    // `core::ptr::drop_in_place` → `ptr::drop_in_place`; `tokio::runtime::task::harness::
    // Harness<…>::poll` → `tokio::…::Harness<…>::poll`. A leading segment that is a whole
    // qualified `<T as Trait>` stays.
    let std_crate = matches!(segments[0].as_str(), "core" | "alloc" | "std");
    let kept: Vec<String> = if std_crate && segments.len() > 2 {
        segments[segments.len() - 2..].to_vec()
    } else if segments.len() > 3 {
        let mut k = vec![segments[0].clone(), "…".into()];
        k.extend_from_slice(&segments[segments.len() - 2..]);
        k
    } else {
        segments
    };
    kept.join("::")
}

/// Shorten each item of a comma-separated list, and each side of `T as Trait`.
fn shorten_list(s: &str, depth: usize) -> String {
    if depth >= 2 {
        return "…".into();
    }
    split_top(s, ',')
        .iter()
        .map(|item| {
            let item = item.trim();
            match split_as(item) {
                Some((ty, tr)) => format!("{} as {}", shorten(ty, depth), shorten(tr, depth)),
                None => match item.strip_prefix('&') {
                    Some(rest) => format!("&{}", shorten(rest, depth)),
                    None => shorten(item, depth),
                },
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `->` is not a bracket.
fn is_arrow(bytes: &[u8], i: usize) -> bool {
    bytes[i] == b'<' && i > 0 && bytes[i - 1] == b'-'
}

/// The index of the bracket closing the one at `open` (or the end of `s`).
fn matching(s: &str, open: usize) -> usize {
    let bytes = s.as_bytes();
    let mut depth = 0usize;
    for (i, &b) in bytes.iter().enumerate().skip(open) {
        match b {
            b'<' | b'[' | b'(' if !is_arrow(bytes, i) => depth += 1,
            b'>' | b']' | b')' if !(b == b'>' && i > 0 && bytes[i - 1] == b'-') => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    s.len() - 1
}

/// Split `s` on `sep` outside brackets.
fn split_top(s: &str, sep: char) -> Vec<&str> {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '<' | '[' | '(' if !is_arrow(bytes, i) => depth += 1,
            '>' | ']' | ')' if !(c == '>' && i > 0 && bytes[i - 1] == b'-') => depth -= 1,
            c if c == sep && depth == 0 => {
                out.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// `Type as Trait` at the top level.
fn split_as(s: &str) -> Option<(&str, &str)> {
    let bytes = s.as_bytes();
    let mut depth = 0i32;
    for (i, c) in s.char_indices() {
        match c {
            '<' | '[' | '(' if !is_arrow(bytes, i) => depth += 1,
            '>' | ']' | ')' if !(c == '>' && i > 0 && bytes[i - 1] == b'-') => depth -= 1,
            ' ' if depth == 0 && s[i..].starts_with(" as ") => {
                return Some((&s[..i], &s[i + 4..]));
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "\
version: 1
creator: callgrind-3.19.0
positions: line
events: Ir
summary: 1000

ob=(1) /bin/server
fl=(1) ???
fn=(1) main
0 100
cfl=(1)
cfn=(2) work
calls=2 0
0 850
fn=(2)
0 600
cfn=(3) alloc
calls=5 0
0 250
fn=(3)
0 250
totals: 1000
";

    #[test]
    fn reads_self_and_inclusive_cost_per_function() {
        let p = Profile::parse(DUMP).unwrap();
        assert_eq!(p.total, 1000);
        assert_eq!(p.self_cost["main"], 100);
        assert_eq!(p.self_cost["work"], 600);
        assert_eq!(p.self_cost["alloc"], 250);
        assert_eq!(p.inclusive["main"], 950);
        assert_eq!(p.inclusive["work"], 850);
        assert_eq!(p.top_self(2), vec![("work", 600), ("alloc", 250)]);
        assert_eq!(
            p.top_inclusive(5, |n| n != "main"),
            vec![("work", 850), ("alloc", 250)]
        );
        assert_eq!(p.top_callers("alloc", 3), vec![("work", 250)]);
        assert_eq!(p.top_callers("main", 3), vec![]);

        // malloc's only caller is the allocator shim: its callers are shown instead.
        let shim = "version: 1\nevents: Ir\nfn=(1) make_vec\n0 10\ncfn=(2) __rustc::__rdl_alloc\ncalls=1 0\n0 90\nfn=(2)\n0 5\ncfn=(3) malloc\ncalls=1 0\n0 85\nfn=(3)\n0 85\n";
        let p = Profile::parse(shim).unwrap();
        assert_eq!(p.top_callers("malloc", 3), vec![("make_vec", 90)]);
    }

    #[test]
    fn short_names_keep_the_crate_and_the_last_two_segments() {
        assert_eq!(
            short_name("core::ptr::drop_in_place::h0123456789abcdef", 80),
            "ptr::drop_in_place"
        );
        assert_eq!(
            short_name(
                "tokio::runtime::task::harness::Harness<T,S>::poll::h0123456789abcdef",
                80
            ),
            "tokio::…::Harness<T, S>::poll"
        );
        assert_eq!(
            short_name("<alloc::vec::Vec<T,A> as core::ops::drop::Drop>::drop", 80),
            "<vec::Vec<…> as drop::Drop>::drop"
        );
        assert_eq!(
            short_name(
                "core::ptr::drop_in_place<smoketest_core::report::Report>",
                80
            ),
            "ptr::drop_in_place<smoketest_core::report::Report>"
        );
        assert_eq!(short_name("malloc", 80), "malloc");
        assert_eq!(short_name("a_rather_long_function_name", 10), "a_rather_…");
    }
}
