//! Output formats: which one a request gets ([`Format::negotiate`]) and the writers.
//!
//! `?format=` wins over `Accept`; `Accept` is matched with q-values and wildcards; no
//! `Accept` (or `*/*`, as curl and kube-probe send) gets JSON. When nothing acceptable can
//! be written the request gets 406. Every writer takes a [`Report`] that was already
//! restricted to the caller's detail level, so no format can show more than another.
//!
//! # Example
//!
//! ```
//! use smoketest_core::format::Format;
//!
//! assert_eq!(Format::negotiate(None, None), Ok(Format::Json));
//! assert_eq!(Format::negotiate(Some("text/plain"), None), Ok(Format::Text));
//! assert_eq!(Format::negotiate(Some("text/plain;q=0.5, application/json"), None), Ok(Format::Json));
//! assert_eq!(Format::negotiate(Some("application/json"), Some(Format::Text)), Ok(Format::Text));
//! assert!(Format::negotiate(Some("image/png"), None).is_err());
//! ```

pub mod json;
pub mod text;

use crate::Report;

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// The JSON report (DESIGN.md §3). The default.
    Json,
    /// Plain text: `PASS`/`FAIL`, then one line per check.
    Text,
}

/// No format satisfies the request's `Accept` header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("none of the media types in `Accept: {accept}` can be produced; available: {available}")]
pub struct NotAcceptable {
    /// The header as sent.
    pub accept: String,
    /// The media types on offer.
    pub available: String,
}

impl Format {
    /// Every format, in preference order for wildcard matches.
    pub const ALL: &'static [Format] = &[Format::Json, Format::Text];

    /// The `?format=` value naming this format.
    pub fn param(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Text => "text",
        }
    }

    /// Parse a `?format=` value.
    pub fn from_param(value: &str) -> Option<Format> {
        Format::ALL.iter().copied().find(|f| f.param() == value)
    }

    /// The `Content-Type` of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Text => "text/plain; charset=utf-8",
        }
    }

    /// The media type (no parameters) this format answers to in `Accept`.
    fn media_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Text => "text/plain",
        }
    }

    /// Choose the format from `?format=` (if given) or the `Accept` header.
    pub fn negotiate(accept: Option<&str>, param: Option<Format>) -> Result<Format, NotAcceptable> {
        if let Some(f) = param {
            return Ok(f);
        }
        let Some(accept) = accept.map(str::trim).filter(|a| !a.is_empty()) else {
            return Ok(Format::Json);
        };
        let mut best: Option<(f32, u8, usize, Format)> = None;
        for (position, range) in accept.split(',').enumerate() {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let mut q = 1.0f32;
            for p in parts {
                if let Some((k, v)) = p.split_once('=')
                    && k.trim().eq_ignore_ascii_case("q")
                {
                    q = v.trim().parse().unwrap_or(0.0);
                }
            }
            if q <= 0.0 {
                continue;
            }
            let Some((ty, sub)) = media.split_once('/') else {
                continue;
            };
            for &format in Format::ALL {
                let (fty, fsub) = format.media_type().split_once('/').expect("type/subtype");
                let specificity = match (ty, sub) {
                    ("*", "*") => 0,
                    (t, "*") if t == fty => 1,
                    (t, s) if t == fty && s == fsub => 2,
                    _ => continue,
                };
                // Higher q wins, then the more specific range, then the earlier one.
                let candidate = (q, specificity, usize::MAX - position, format);
                let better = match &best {
                    None => true,
                    Some((bq, bs, bp, _)) => {
                        (q, specificity, usize::MAX - position) > (*bq, *bs, *bp)
                    }
                };
                if better {
                    best = Some(candidate);
                }
                // A wildcard takes the first format in preference order only.
                if specificity < 2 {
                    break;
                }
            }
        }
        best.map(|(_, _, _, f)| f).ok_or_else(|| NotAcceptable {
            accept: accept.to_string(),
            available: Format::ALL
                .iter()
                .map(|f| f.media_type())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// Write `report` in this format.
    pub fn write(self, report: &Report) -> Vec<u8> {
        match self {
            Format::Json => json::write(report),
            Format::Text => text::write(report),
        }
    }
}
