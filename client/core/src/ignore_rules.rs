//! What is never synced: Pouch's built-in list of temp and editor files,
//! plus the user's `.pouchignore` at the root (gitignore syntax; the file
//! itself syncs, like `.gitignore`).
//!
//! An ignored path is left alone on both sides: not uploaded, not
//! downloaded, and never deleted because it is missing from one side.

use std::path::Path;

use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::path::RelPath;

/// The per-folder ignore file.
pub const IGNORE_FILE: &str = ".pouchignore";

/// Editors' swap and lock files and OS litter (Pouch's own temp files are
/// added from the one temp-name rule).
const BUILT_IN: &[&str] = &[
    "*.swp",
    "*.swx",
    "*~",
    ".#*",
    "#*#",
    ".~lock.*#",
    "~$*",
    ".DS_Store",
    "Thumbs.db",
    "desktop.ini",
];

/// The rules for one sync root.
#[derive(Debug, Clone)]
pub struct IgnoreRules {
    rules: Gitignore,
    /// Folders this device does not sync (selective sync).
    excluded: Vec<RelPath>,
    /// Problems reading `.pouchignore`, reported with the sync.
    pub problems: Vec<String>,
}

impl IgnoreRules {
    /// The built-in rules plus `root/.pouchignore` if there is one.
    pub fn load(root: &Path) -> Self {
        let mut builder = GitignoreBuilder::new(root);
        let mut problems = Vec::new();
        let temp_files = format!("{}*", crate::names::TEMP_PREFIX);
        for rule in BUILT_IN.iter().copied().chain([temp_files.as_str()]) {
            builder
                .add_line(None, rule)
                .expect("built-in rules are valid");
        }
        let file = root.join(IGNORE_FILE);
        if file.is_file()
            && let Some(e) = builder.add(&file)
        {
            problems.push(format!("{}: {e}", file.display()));
        }
        let rules = builder.build().unwrap_or_else(|e| {
            problems.push(format!("{}: {e}", file.display()));
            Gitignore::empty()
        });
        Self {
            rules,
            excluded: Vec::new(),
            problems,
        }
    }

    /// Also leaves out these folders and everything in them.
    pub fn with_excluded(mut self, excluded: Vec<RelPath>) -> Self {
        self.excluded.extend(excluded);
        self
    }

    /// Whether `path` (or a folder it is in) is ignored.
    pub fn is_ignored(&self, path: &RelPath, is_dir: bool) -> bool {
        if !self.excluded.is_empty()
            && (self.excluded.contains(path)
                || path.ancestors().any(|a| self.excluded.contains(&a)))
        {
            return true;
        }
        self.rules
            .matched_path_or_any_parents(path.as_str(), is_dir)
            .is_ignore()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_and_user_rules() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(IGNORE_FILE), "build/\n*.log\n!keep.log\n").unwrap();
        let rules = IgnoreRules::load(dir.path());
        assert!(rules.problems.is_empty());
        let ignored = |p: &str, dir: bool| rules.is_ignored(&RelPath::parse(p).unwrap(), dir);
        assert!(ignored("build", true));
        assert!(ignored("build/out/x.bin", false));
        assert!(ignored("a/b/debug.log", false));
        assert!(!ignored("a/b/keep.log", false));
        assert!(ignored("notes/.todo.txt.swp", false));
        assert!(ignored("~$report.docx", false));
        assert!(ignored(".pouch-tmp-12-3", false));
        assert!(!ignored("notes/todo.txt", false));
        assert!(!ignored(IGNORE_FILE, false));
        assert!(!ignored("building.txt", false));

        let rules = rules.with_excluded(vec![RelPath::parse("photos/raw").unwrap()]);
        let ignored = |p: &str| rules.is_ignored(&RelPath::parse(p).unwrap(), false);
        assert!(ignored("photos/raw") && ignored("photos/raw/2026/a.cr2"));
        assert!(!ignored("photos/rawr") && !ignored("photos") && !ignored("photos/x"));
    }
}
