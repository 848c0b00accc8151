use super::*;

const ONE: &str = "[[expected]]\nip = \"203.0.113.5\"\nport = 443\n";
const TWO: &str = "[[expected]]\nip = \"203.0.113.5\"\nport = 443\n\n[[expected]]\nip = \"203.0.113.6\"\nport = 22\n";
const BROKEN: &str = "[[expected]]\nip = \"203.0.113.5\"\nport = 70000\n";

/// Writes `text` to `path` the way an operator's tool should: a new file
/// renamed into place.
fn write(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn a_missing_file_at_start_is_an_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("expected.toml");
    let problems = Watched::load(&path)
        .err()
        .expect("a missing file is refused");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with(&format!("{}: cannot read: ", path.display())),
        "{problems:?}"
    );
}

#[test]
fn a_broken_file_at_start_lists_every_problem_with_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("expected.toml");
    write(&path, &format!("{BROKEN}\n[[expected]]\nport = 22\n"));
    let problems = Watched::load(&path)
        .err()
        .expect("a broken file is refused");
    let shown = path.display();
    assert_eq!(
        problems,
        [
            format!("{shown} line 3: expected[0].port: 70000 is not a port (ports are 1 to 65535)"),
            format!("{shown} line 5: expected[1]: missing key \"ip\""),
        ]
    );
}

#[test]
fn an_empty_holder_expects_nothing_and_never_reloads() {
    let watched = Watched::empty();
    assert!(watched.current().is_empty());
    assert_eq!(watched.path(), None);
    assert_eq!(watched.reload(true), Reload::Unchanged);
}

#[test]
fn a_changed_good_file_replaces_the_list_and_an_unchanged_one_is_not_reread() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("expected.toml");
    write(&path, ONE);
    let watched = Watched::load(&path).unwrap();
    assert_eq!(watched.current().len(), 1);
    assert_eq!(watched.reload(false), Reload::Unchanged);
    write(&path, TWO);
    assert_eq!(watched.reload(false), Reload::Loaded(2));
    assert_eq!(watched.current().len(), 2);
    assert_eq!(watched.reload(false), Reload::Unchanged);
    // SIGHUP re-reads even an unchanged file.
    assert_eq!(watched.reload(true), Reload::Loaded(2));
}

#[test]
fn a_broken_or_vanished_file_keeps_the_previous_list() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("expected.toml");
    write(&path, TWO);
    let watched = Watched::load(&path).unwrap();
    write(&path, BROKEN);
    let Reload::Failed(problems) = watched.reload(false) else {
        panic!("a broken file is a failure");
    };
    assert_eq!(
        problems,
        [format!(
            "{} line 3: expected[0].port: 70000 is not a port (ports are 1 to 65535)",
            path.display()
        )]
    );
    assert_eq!(watched.current().len(), 2);
    // Reported once per change, not at every poll.
    assert_eq!(watched.reload(false), Reload::Unchanged);
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(watched.reload(false), Reload::Failed(p) if p[0].contains("cannot read")));
    assert_eq!(watched.current().len(), 2);
    write(&path, ONE);
    assert_eq!(watched.reload(false), Reload::Loaded(1));
}
