//! The repository's references hold: every relative link of a Markdown
//! file, and every `docs/NAME.md#anchor` cited in code, config or docs,
//! names a file (and heading) the repository has; and nothing cites a
//! contract it does not contain.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Files that may cite docs or link to them.
const TEXT: [&str; 9] = ["md", "rs", "toml", "yml", "yaml", "sh", "txt", "py", "json"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every text file of the repository (and every file of `.ci/`), outside
/// `target/` and hidden directories.
fn text_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if path.is_dir() {
                let hidden = name.starts_with('.') && name != ".ci";
                if !hidden && name != "target" && name != "node_modules" {
                    walk(&path, out);
                }
            } else if dir.file_name().is_some_and(|n| n == ".ci") || {
                let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
                TEXT.contains(&ext)
            } {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&root(), &mut out);
    out.sort();
    out
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces
/// to dashes.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a Markdown file's headings (outside code blocks).
fn anchors(path: &Path) -> BTreeSet<String> {
    let mut in_code = false;
    let mut out = BTreeSet::new();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            out.insert(slug(line.trim_start_matches('#')));
        }
    }
    out
}

/// `(target, line)` of every `](target)` in Markdown text.
fn markdown_links(text: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            let end = rest.find(')').unwrap_or(rest.len());
            out.push((rest[..end].to_owned(), n + 1));
            rest = &rest[end..];
        }
    }
    out
}

/// `(docs/NAME.md#anchor, line)` of every citation of a doc in any text.
fn doc_citations(text: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find("docs/") {
            rest = &rest[at..];
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || "/._-#".contains(c)))
                .unwrap_or(rest.len());
            let cited = rest[..end].trim_end_matches('.');
            if cited.contains(".md") {
                out.push((cited.to_owned(), n + 1));
            }
            rest = &rest[end.max(1)..];
        }
    }
    out
}

struct Checker {
    anchors: BTreeMap<PathBuf, BTreeSet<String>>,
    problems: Vec<String>,
}

impl Checker {
    /// Checks that `target` (relative to `base`, with an optional
    /// `#anchor`) exists; `at` says where it was cited.
    fn check(&mut self, base: &Path, target: &str, at: &str) {
        let (path, anchor) = target.split_once('#').unwrap_or((target, ""));
        let file = if path.is_empty() {
            PathBuf::from(at.split(':').next().unwrap())
        } else {
            base.join(path)
        };
        if !file.exists() {
            self.problems.push(format!("{at}: {target}: no such file"));
            return;
        }
        if anchor.is_empty() || file.extension().is_none_or(|e| e != "md") {
            return;
        }
        let anchors = self
            .anchors
            .entry(file.clone())
            .or_insert_with(|| anchors(&file));
        if !anchors.contains(anchor) {
            self.problems
                .push(format!("{at}: {target}: no heading #{anchor}"));
        }
    }
}

#[test]
fn every_link_and_doc_citation_names_a_file_and_heading_the_repository_has() {
    let root = root();
    let mut checker = Checker {
        anchors: BTreeMap::new(),
        problems: Vec::new(),
    };
    let mut checked = 0;
    for file in text_files() {
        // This file's examples of citations are not citations.
        if file.ends_with("tests/docs.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let shown = file.strip_prefix(&root).unwrap().display().to_string();
        if file.extension().is_some_and(|e| e == "md") {
            let base = file.parent().unwrap();
            for (target, line) in markdown_links(&text) {
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                checked += 1;
                checker.check(base, &target, &format!("{}:{line}", file.display()));
            }
        }
        for (cited, line) in doc_citations(&text) {
            // "docs/x.md" inside a longer path (a link's "../docs/x.md") is
            // a link, checked above.
            checked += 1;
            checker.check(&root, &cited, &format!("{shown}:{line}"));
        }
    }
    assert!(checked > 100, "only {checked} links and citations found");
    assert!(
        checker.problems.is_empty(),
        "{}",
        checker.problems.join("\n")
    );
}

#[test]
fn nothing_cites_a_contract_outside_the_repository() {
    let root = root();
    let mut problems = Vec::new();
    for file in text_files() {
        if file.ends_with("tests/docs.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for (n, line) in text.lines().enumerate() {
            if line.contains("SPEC") && !line.contains("UNSPECIFIED") || line.contains('§') {
                let shown = file.strip_prefix(&root).unwrap().display();
                problems.push(format!("{shown}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
