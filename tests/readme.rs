//! The README's Rust snippets marked `<!-- from: path -->` are lifted from code that is
//! compiled and tested: every line of such a snippet appears, in order, in that file (`// …`
//! marks an elision). A README edit that drifts from the code fails here.

use std::path::Path;

fn trimmed_lines(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn marked_readme_snippets_are_code_that_compiles() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let mut checked = 0;
    let mut rest = readme.as_str();
    while let Some(at) = rest.find("<!-- from: ") {
        let after = &rest[at + "<!-- from: ".len()..];
        let (source, after) = after.split_once(" -->").expect("a closed marker");
        let block = after
            .trim_start()
            .strip_prefix("```rust\n")
            .unwrap_or_else(|| panic!("a ```rust block follows the marker for {source}"));
        let (snippet, after) = block.split_once("```").expect("a closed block");
        let code =
            std::fs::read_to_string(root.join(source)).unwrap_or_else(|e| panic!("{source}: {e}"));
        let code = trimmed_lines(&code);
        let mut from = 0;
        for line in trimmed_lines(snippet) {
            if line.starts_with("// …") {
                continue;
            }
            match code[from..].iter().position(|l| *l == line) {
                Some(i) => from += i + 1,
                None => panic!("README snippet line not found (in order) in {source}: {line}"),
            }
        }
        checked += 1;
        rest = after;
    }
    assert!(checked >= 2, "the Kubernetes section's snippets are marked");
}
